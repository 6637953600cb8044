import IoMTCore

/// One HCI packet as carried over the UART (H4) transport, Core v5.4 Vol 4 Part A 2.
public enum HCIPacket: Sendable, Hashable {
    case command(HCICommand)
    case acl(ACLPacket)
    case event(code: UInt8, parameters: [UInt8])
    /// A synchronous data packet, everything after the indicator (header included).
    case sco([UInt8])
    /// An isochronous data packet, everything after the indicator (header included).
    case iso([UInt8])

    /// H4 packet indicators, Core v5.4 Vol 4 Part A 2 (Table 2.1).
    public enum Indicator {
        public static let command: UInt8 = 0x01
        public static let acl: UInt8 = 0x02
        public static let sco: UInt8 = 0x03
        public static let event: UInt8 = 0x04
        public static let iso: UInt8 = 0x05
    }

    /// The packet without the H4 indicator.
    public var packetBytes: [UInt8] {
        switch self {
        case .command(let c): return c.encoded
        case .acl(let a): return a.encoded
        case .event(let code, let p):
            return [code, UInt8(truncatingIfNeeded: p.count)] + p
        case .sco(let b), .iso(let b): return b
        }
    }

    public var indicator: UInt8 {
        switch self {
        case .command: return Indicator.command
        case .acl: return Indicator.acl
        case .sco: return Indicator.sco
        case .event: return Indicator.event
        case .iso: return Indicator.iso
        }
    }

    /// Indicator byte followed by the packet.
    public var h4Bytes: [UInt8] { [indicator] + packetBytes }
}

/// Why an H4 byte stream cannot be framed. After any of these the stream has lost sync: the
/// framer is unusable and the transport must be reset (H4 has no resynchronisation,
/// Core v5.4 Vol 4 Part A 2; recovery is HCI_Reset on a fresh stream).
public enum H4Error: Error, Sendable, Hashable, CustomStringConvertible {
    case unknownPacketIndicator(UInt8)
    case packetTooLong(indicator: UInt8, length: Int, maximum: Int)
    /// `push` was called again after an error.
    case framerFailed

    public var description: String {
        switch self {
        case .unknownPacketIndicator(let b):
            return "H4: unknown packet indicator 0x\(String(b, radix: 16)) (stream out of sync; reset the transport)"
        case .packetTooLong(let i, let l, let m):
            return "H4: packet (indicator 0x\(String(i, radix: 16))) of \(l) bytes exceeds the bound of \(m)"
        case .framerFailed:
            return "H4: framer already failed; reset the transport"
        }
    }
}

/// Incremental H4 framer (Core v5.4 Vol 4 Part A 2): push bytes as they arrive, in any split;
/// complete packets come out. After a thrown error every later `push` throws `.framerFailed`:
/// the transport must be reset and a new framer made.
public struct H4Framer: Sendable {
    public let maxPacketLength: Int
    private var buffer: [UInt8] = []
    private var failed = false

    /// `maxPacketLength` bounds header + payload (without the indicator).
    public init(maxPacketLength: Int = 65_535 + 4) {
        self.maxPacketLength = maxPacketLength
    }

    /// Header length after the indicator, Core v5.4 Vol 4 Part E 5.4.
    private static func headerLength(_ indicator: UInt8) -> Int? {
        switch indicator {
        case HCIPacket.Indicator.command: return 3
        case HCIPacket.Indicator.acl: return 4
        case HCIPacket.Indicator.sco: return 3
        case HCIPacket.Indicator.event: return 2
        case HCIPacket.Indicator.iso: return 4
        default: return nil
        }
    }

    private static func payloadLength(_ indicator: UInt8, _ h: ArraySlice<UInt8>) -> Int {
        let b = Array(h)
        switch indicator {
        case HCIPacket.Indicator.command: return Int(b[2])
        case HCIPacket.Indicator.acl: return Int(b[2]) | Int(b[3]) << 8
        case HCIPacket.Indicator.sco: return Int(b[2])
        case HCIPacket.Indicator.event: return Int(b[1])
        default: return (Int(b[2]) | Int(b[3]) << 8) & 0x3FFF  // ISO: 14-bit length, 5.4.5
        }
    }

    public mutating func push(_ bytes: some Collection<UInt8>) throws(H4Error) -> [HCIPacket] {
        if failed { throw .framerFailed }
        buffer.append(contentsOf: bytes)
        var out: [HCIPacket] = []
        var start = 0
        defer { buffer.removeFirst(start) }
        while start < buffer.count {
            let ind = buffer[start]
            guard let hl = Self.headerLength(ind) else {
                failed = true
                throw .unknownPacketIndicator(ind)
            }
            guard buffer.count - start - 1 >= hl else { break }
            let header = buffer[(start + 1)..<(start + 1 + hl)]
            let pl = Self.payloadLength(ind, header)
            if hl + pl > maxPacketLength {
                failed = true
                throw .packetTooLong(indicator: ind, length: hl + pl, maximum: maxPacketLength)
            }
            let total = 1 + hl + pl
            guard buffer.count - start >= total else { break }
            let body = Array(buffer[(start + 1)..<(start + total)])
            out.append(Self.packet(ind, body))
            start += total
        }
        return out
    }

    /// Builds a packet from a complete body (header lengths already checked, so no failure).
    private static func packet(_ ind: UInt8, _ b: [UInt8]) -> HCIPacket {
        switch ind {
        case HCIPacket.Indicator.command:
            return .command(HCICommand(opcode: HCIOpcode(rawValue: UInt16(b[0]) | UInt16(b[1]) << 8),
                                       parameters: Array(b[3...])))
        case HCIPacket.Indicator.acl:
            let hf = UInt16(b[0]) | UInt16(b[1]) << 8
            return .acl(ACLPacket(handle: ConnectionHandle(rawValue: hf & 0x0FFF),
                                  boundary: PacketBoundary(rawValue: UInt8((hf >> 12) & 0x3)),
                                  broadcast: UInt8(hf >> 14), data: Array(b[4...])))
        case HCIPacket.Indicator.event:
            return .event(code: b[0], parameters: Array(b[2...]))
        case HCIPacket.Indicator.sco:
            return .sco(b)
        default:
            return .iso(b)
        }
    }
}
