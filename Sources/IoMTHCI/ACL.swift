import IoMTCore

/// Packet_Boundary_Flag, Core v5.4 Vol 4 Part E 5.4.2. Open: unknown values survive.
public struct PacketBoundary: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x3 }
    /// First fragment of a non-automatically-flushable L2CAP PDU (host to controller).
    public static let firstNonFlushable = PacketBoundary(rawValue: 0b00)
    /// Continuing fragment.
    public static let continuing = PacketBoundary(rawValue: 0b01)
    /// First fragment of an automatically-flushable L2CAP PDU (what controllers send to the host).
    public static let firstAutomaticallyFlushable = PacketBoundary(rawValue: 0b10)
    /// A complete L2CAP PDU, automatically flushable (BR/EDR only; treated as a start).
    public static let complete = PacketBoundary(rawValue: 0b11)

    public var isStart: Bool { self != .continuing }
}

/// An HCI ACL data packet, Core v5.4 Vol 4 Part E 5.4.2.
public struct ACLPacket: Sendable, Hashable {
    public var handle: ConnectionHandle
    public var boundary: PacketBoundary
    /// Broadcast_Flag (2 bits); 0 for LE.
    public var broadcast: UInt8
    public var data: [UInt8]

    public init(handle: ConnectionHandle, boundary: PacketBoundary, broadcast: UInt8 = 0, data: [UInt8]) {
        self.handle = handle; self.boundary = boundary; self.broadcast = broadcast & 0x3; self.data = data
    }

    /// Handle (12 bits) | PB << 12 | BC << 14, Data_Total_Length, data — without the H4 indicator.
    public var encoded: [UInt8] {
        let hf = handle.rawValue | UInt16(boundary.rawValue) << 12 | UInt16(broadcast & 0x3) << 14
        return [UInt8(hf & 0xFF), UInt8(hf >> 8), UInt8(data.count & 0xFF), UInt8((data.count >> 8) & 0xFF)] + data
    }

    /// Decodes one ACL packet (without H4 indicator); throws when the header or the declared data is short.
    public static func decode(_ bytes: [UInt8]) throws(HCIDecodeError) -> ACLPacket {
        try decoding("ACL data packet", bytes) { (r: inout ByteReader) throws(ByteReaderError) in
            let hf = try r.u16le("Handle_Flags")
            let len = try r.u16le("Data_Total_Length")
            let d = Array(try r.bytes(Int(len), "Data"))
            return ACLPacket(handle: ConnectionHandle(rawValue: hf & 0x0FFF), boundary: PacketBoundary(rawValue: UInt8((hf >> 12) & 0x3)),
                             broadcast: UInt8(hf >> 14), data: d)
        }
    }
}

/// Host-to-controller ACL flow control, Core v5.4 Vol 4 Part E 4.1.1 (packet-based): the host may
/// have at most Total_Num_LE_ACL_Data_Packets outstanding; each Number Of Completed Packets returns
/// credits. PDUs are fragmented to the controller's buffer length; queued fragments are sent
/// round-robin across handles, one fragment at a time, so one busy link cannot starve the others.
public struct ACLOutbound: Sendable {
    public let bufferLength: Int
    public let totalPackets: Int
    public private(set) var credits: Int
    private var inFlight: [ConnectionHandle: Int] = [:]
    private var queues: [ConnectionHandle: [ACLPacket]] = [:]
    /// Handles with queued fragments, in service order.
    private var rotation: [ConnectionHandle] = []
    /// Completed-packet counts for handles with nothing in flight (ignored).
    public private(set) var unexpectedCompletions = 0

    public init(bufferLength: Int, totalPackets: Int) {
        self.bufferLength = max(1, bufferLength)
        self.totalPackets = max(1, totalPackets)
        self.credits = max(1, totalPackets)
    }

    /// Fragments queued and not yet handed out.
    public var queuedCount: Int { queues.values.reduce(0) { $0 + $1.count } }
    /// Packets handed out and not yet completed.
    public var inFlightCount: Int { inFlight.values.reduce(0, +) }
    public func inFlight(on handle: ConnectionHandle) -> Int { inFlight[handle] ?? 0 }

    /// Fragments `l2capPDU` (first fragment `.firstNonFlushable`, rest `.continuing`), queues
    /// them and returns the packets that may be written now.
    public mutating func send(_ l2capPDU: [UInt8], on handle: ConnectionHandle) -> [ACLPacket] {
        guard !l2capPDU.isEmpty else { return drain() }
        var frags: [ACLPacket] = []
        var i = 0
        while i < l2capPDU.count {
            let end = min(i + bufferLength, l2capPDU.count)
            frags.append(ACLPacket(handle: handle, boundary: i == 0 ? .firstNonFlushable : .continuing,
                                   data: Array(l2capPDU[i..<end])))
            i = end
        }
        if queues[handle, default: []].isEmpty { rotation.append(handle) }
        queues[handle, default: []] += frags
        return drain()
    }

    /// Number Of Completed Packets (Vol 4 Part E 7.7.19): returns credits, then the newly sendable packets.
    public mutating func completed(_ packets: [CompletedPackets]) -> [ACLPacket] {
        for p in packets {
            let have = inFlight[p.handle] ?? 0
            let n = min(Int(p.count), have)
            if n < Int(p.count) { unexpectedCompletions += Int(p.count) - n }
            if n > 0 {
                inFlight[p.handle] = have - n == 0 ? nil : have - n
                credits = min(totalPackets, credits + n)
            }
        }
        return drain()
    }

    /// The link is gone: its queue is dropped and its in-flight packets' credits come back, since the
    /// controller flushes them without a Number Of Completed Packets (Vol 4 Part E 7.7.5).
    public mutating func disconnected(_ handle: ConnectionHandle) -> [ACLPacket] {
        queues[handle] = nil
        rotation.removeAll { $0 == handle }
        if let n = inFlight.removeValue(forKey: handle) { credits = min(totalPackets, credits + n) }
        return drain()
    }

    private mutating func drain() -> [ACLPacket] {
        var out: [ACLPacket] = []
        while credits > 0, !rotation.isEmpty {
            let h = rotation.removeFirst()
            guard var q = queues[h], !q.isEmpty else { continue }
            out.append(q.removeFirst())
            credits -= 1
            inFlight[h, default: 0] += 1
            queues[h] = q.isEmpty ? nil : q
            if !q.isEmpty { rotation.append(h) }
        }
        return out
    }
}

/// A complete L2CAP B-frame, Core v5.4 Vol 3 Part A 3.1.
public struct L2CAPBasicFrame: Sendable, Hashable {
    public var handle: ConnectionHandle
    public var channelID: UInt16
    public var payload: [UInt8]
    public init(handle: ConnectionHandle, channelID: UInt16, payload: [UInt8]) {
        self.handle = handle; self.channelID = channelID; self.payload = payload
    }

    /// Basic L2CAP header (Length, Channel ID) + payload: the PDU handed to `ACLOutbound.send`.
    public var pdu: [UInt8] {
        [UInt8(payload.count & 0xFF), UInt8((payload.count >> 8) & 0xFF), UInt8(channelID & 0xFF), UInt8(channelID >> 8)] + payload
    }
}

/// Why ACL fragments could not be reassembled. The handle's partial frame is discarded.
public enum ReassemblyError: Error, Sendable, Hashable, CustomStringConvertible {
    case continuationWithoutStart(ConnectionHandle)
    case frameLongerThanDeclared(ConnectionHandle, declared: Int, received: Int)
    case declaredLengthTooLarge(ConnectionHandle, declared: Int, maximum: Int)

    public var description: String {
        switch self {
        case .continuationWithoutStart(let h): return "L2CAP on \(h): continuing fragment without a start"
        case .frameLongerThanDeclared(let h, let d, let r):
            return "L2CAP on \(h): fragments carry \(r) payload bytes, the basic header declared \(d)"
        case .declaredLengthTooLarge(let h, let d, let m):
            return "L2CAP on \(h): declared length \(d) exceeds the bound \(m)"
        }
    }
}

/// Reassembles ACL fragments into L2CAP basic frames, per handle (Core v5.4 Vol 3 Part A 7.2 and 3.1).
/// It does not care about the controller's buffer size (the Bumble controller sends packets larger
/// than it advertises). A start fragment while a frame is incomplete discards the old frame
/// (counted in `discardedIncomplete`) and begins the new one.
public struct L2CAPReassembler: Sendable {
    public let maxPayloadLength: Int
    private var partial: [ConnectionHandle: [UInt8]] = [:]
    public private(set) var discardedIncomplete = 0

    /// `maxPayloadLength` bounds the basic header's Length (LE: the largest MTU/MPS you accept + margin).
    public init(maxPayloadLength: Int = 65_535) { self.maxPayloadLength = maxPayloadLength }

    public mutating func receive(_ packet: ACLPacket) throws(ReassemblyError) -> L2CAPBasicFrame? {
        let h = packet.handle
        var buf: [UInt8]
        if packet.boundary.isStart {
            if partial[h] != nil { discardedIncomplete += 1 }
            buf = packet.data
        } else {
            guard let p = partial[h] else { throw .continuationWithoutStart(h) }
            buf = p + packet.data
        }
        partial[h] = nil
        guard buf.count >= 4 else { partial[h] = buf; return nil }  // header itself split
        let declared = Int(buf[0]) | Int(buf[1]) << 8
        if declared > maxPayloadLength { throw .declaredLengthTooLarge(h, declared: declared, maximum: maxPayloadLength) }
        let got = buf.count - 4
        if got > declared { throw .frameLongerThanDeclared(h, declared: declared, received: got) }
        if got < declared { partial[h] = buf; return nil }
        return L2CAPBasicFrame(handle: h, channelID: UInt16(buf[2]) | UInt16(buf[3]) << 8, payload: Array(buf[4...]))
    }

    /// Drops the handle's partial frame.
    public mutating func disconnected(_ handle: ConnectionHandle) { partial[handle] = nil }

    public func hasPartialFrame(on handle: ConnectionHandle) -> Bool { partial[handle] != nil }
}
