import IoMTCore

/// LE fixed channel identifiers, Core v5.4 Vol 3 Part A 2.1 (Table 2.3).
public enum L2CAPChannel {
    /// Attribute protocol.
    public static let att: UInt16 = 0x0004
    /// LE signalling channel.
    public static let leSignalling: UInt16 = 0x0005
    /// Security Manager protocol.
    public static let smp: UInt16 = 0x0006
}

/// A basic L2CAP frame (B-frame): Length (2, payload only), Channel ID (2), payload.
/// Core v5.4 Vol 3 Part A 3.1. The payload must fit 16 bits; longer payloads are the caller's bug
/// (the length field keeps its low 16 bits).
public func l2capBasicFrame(channel: UInt16, payload: [UInt8]) -> [UInt8] {
    let n = UInt16(truncatingIfNeeded: payload.count)
    var out: [UInt8] = [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(channel & 0xFF), UInt8(channel >> 8)]
    out.append(contentsOf: payload)
    return out
}

/// A signalling decoding failure that names the field.
public struct L2CAPDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }
    init(_ e: ByteReaderError) {
        self.init(field: e.field, reason: "truncated: needs \(e.needed) octet(s), \(e.available) left")
    }
    public var description: String { "\(field): \(reason)" }
}

/// Command Reject reasons, Core v5.4 Vol 3 Part A 4.1.
public enum L2CAPRejectReason {
    public static let commandNotUnderstood: UInt16 = 0x0000
    public static let signallingMTUExceeded: UInt16 = 0x0001
    public static let invalidCIDInRequest: UInt16 = 0x0002
}

/// LE credit based connection results, Core v5.4 Vol 3 Part A 4.23.
public enum LECreditBasedConnectionResult {
    public static let successful: UInt16 = 0x0000
    public static let spsmNotSupported: UInt16 = 0x0002
}

/// One LE signalling command (a C-frame on CID 0x0005 carries exactly one), Core v5.4 Vol 3 Part A 4.
/// Header: Code (1), Identifier (1), Length (2), data.
public enum LESignallingCommand: Sendable, Hashable {
    /// 0x01, Vol 3 Part A 4.1. `data` is the reason-specific data (0, 2 or 4 octets).
    case commandReject(identifier: UInt8, reason: UInt16, data: [UInt8])
    /// 0x06, Vol 3 Part A 4.6.
    case disconnectionRequest(identifier: UInt8, destinationCID: UInt16, sourceCID: UInt16)
    /// 0x07, Vol 3 Part A 4.7.
    case disconnectionResponse(identifier: UInt8, destinationCID: UInt16, sourceCID: UInt16)
    /// 0x12, Vol 3 Part A 4.20. Intervals in 1.25 ms, latency in events, timeout in 10 ms.
    case connectionParameterUpdateRequest(identifier: UInt8, intervalMin: UInt16, intervalMax: UInt16,
                                          latency: UInt16, timeout: UInt16)
    /// 0x13, Vol 3 Part A 4.21. Result 0x0000 accepted, 0x0001 rejected.
    case connectionParameterUpdateResponse(identifier: UInt8, result: UInt16)
    /// 0x14, Vol 3 Part A 4.22.
    case leCreditBasedConnectionRequest(identifier: UInt8, spsm: UInt16, sourceCID: UInt16, mtu: UInt16,
                                        mps: UInt16, initialCredits: UInt16)
    /// 0x15, Vol 3 Part A 4.23.
    case leCreditBasedConnectionResponse(identifier: UInt8, destinationCID: UInt16, mtu: UInt16, mps: UInt16,
                                         initialCredits: UInt16, result: UInt16)
    /// 0x16, Vol 3 Part A 4.24.
    case flowControlCredit(identifier: UInt8, cid: UInt16, credits: UInt16)
    /// Any other code, kept verbatim.
    case unknown(code: UInt8, identifier: UInt8, data: [UInt8])

    public var code: UInt8 {
        switch self {
        case .commandReject: 0x01
        case .disconnectionRequest: 0x06
        case .disconnectionResponse: 0x07
        case .connectionParameterUpdateRequest: 0x12
        case .connectionParameterUpdateResponse: 0x13
        case .leCreditBasedConnectionRequest: 0x14
        case .leCreditBasedConnectionResponse: 0x15
        case .flowControlCredit: 0x16
        case .unknown(let code, _, _): code
        }
    }

    public var identifier: UInt8 {
        switch self {
        case .commandReject(let i, _, _), .disconnectionRequest(let i, _, _), .disconnectionResponse(let i, _, _),
             .connectionParameterUpdateRequest(let i, _, _, _, _), .connectionParameterUpdateResponse(let i, _),
             .leCreditBasedConnectionRequest(let i, _, _, _, _, _),
             .leCreditBasedConnectionResponse(let i, _, _, _, _, _), .flowControlCredit(let i, _, _),
             .unknown(_, let i, _):
            i
        }
    }

    public func encode() -> [UInt8] {
        var d = ByteWriter()
        switch self {
        case .commandReject(_, let reason, let data):
            d.u16(reason); d.append(data)
        case .disconnectionRequest(_, let dcid, let scid), .disconnectionResponse(_, let dcid, let scid):
            d.u16(dcid); d.u16(scid)
        case .connectionParameterUpdateRequest(_, let a, let b, let c, let e):
            d.u16(a); d.u16(b); d.u16(c); d.u16(e)
        case .connectionParameterUpdateResponse(_, let r):
            d.u16(r)
        case .leCreditBasedConnectionRequest(_, let spsm, let scid, let mtu, let mps, let cr):
            d.u16(spsm); d.u16(scid); d.u16(mtu); d.u16(mps); d.u16(cr)
        case .leCreditBasedConnectionResponse(_, let dcid, let mtu, let mps, let cr, let r):
            d.u16(dcid); d.u16(mtu); d.u16(mps); d.u16(cr); d.u16(r)
        case .flowControlCredit(_, let cid, let credits):
            d.u16(cid); d.u16(credits)
        case .unknown(_, _, let data):
            d.append(data)
        }
        var out = ByteWriter()
        out.u8(code); out.u8(identifier); out.u16(UInt16(truncatingIfNeeded: d.bytes.count)); out.append(d.bytes)
        return out.bytes
    }

    /// Decodes one command. The Length field must match the octets present exactly and the data
    /// must have the command's fixed size (Command Reject: 2 to 6 octets).
    public static func decode(_ bytes: [UInt8]) throws(L2CAPDecodeError) -> LESignallingCommand {
        do {
            return try decodeUntyped(bytes)
        } catch let e as ByteReaderError {
            throw L2CAPDecodeError(e)
        } catch let e as L2CAPDecodeError {
            throw e
        } catch {
            throw L2CAPDecodeError(field: "command", reason: "\(error)")
        }
    }

    private static func decodeUntyped(_ bytes: [UInt8]) throws -> LESignallingCommand {
        var r = ByteReader(bytes)
        let code = try r.u8("code")
        let id = try r.u8("identifier")
        let length = try r.u16le("length")
        guard Int(length) == r.remaining else {
            throw L2CAPDecodeError(field: "length", reason: "says \(length), \(r.remaining) octet(s) follow")
        }
        func fixed(_ n: Int, _ name: String) throws(L2CAPDecodeError) {
            if Int(length) != n {
                throw L2CAPDecodeError(field: "\(name) data", reason: "expected \(n) octet(s), got \(length)")
            }
        }
        switch code {
        case 0x01:
            let reason = try r.u16le("reason")
            let data = Array(try r.bytes(r.remaining, "data"))
            guard data.count <= 4 else {
                throw L2CAPDecodeError(field: "command reject data", reason: "\(data.count) octets, at most 4")
            }
            return .commandReject(identifier: id, reason: reason, data: data)
        case 0x06, 0x07:
            try fixed(4, code == 0x06 ? "disconnection request" : "disconnection response")
            let dcid = try r.u16le("destination CID")
            let scid = try r.u16le("source CID")
            return code == 0x06
                ? .disconnectionRequest(identifier: id, destinationCID: dcid, sourceCID: scid)
                : .disconnectionResponse(identifier: id, destinationCID: dcid, sourceCID: scid)
        case 0x12:
            try fixed(8, "connection parameter update request")
            return .connectionParameterUpdateRequest(
                identifier: id, intervalMin: try r.u16le("interval min"), intervalMax: try r.u16le("interval max"),
                latency: try r.u16le("latency"), timeout: try r.u16le("timeout"))
        case 0x13:
            try fixed(2, "connection parameter update response")
            return .connectionParameterUpdateResponse(identifier: id, result: try r.u16le("result"))
        case 0x14:
            try fixed(10, "LE credit based connection request")
            return .leCreditBasedConnectionRequest(
                identifier: id, spsm: try r.u16le("SPSM"), sourceCID: try r.u16le("source CID"),
                mtu: try r.u16le("MTU"), mps: try r.u16le("MPS"), initialCredits: try r.u16le("initial credits"))
        case 0x15:
            try fixed(10, "LE credit based connection response")
            return .leCreditBasedConnectionResponse(
                identifier: id, destinationCID: try r.u16le("destination CID"), mtu: try r.u16le("MTU"),
                mps: try r.u16le("MPS"), initialCredits: try r.u16le("initial credits"), result: try r.u16le("result"))
        case 0x16:
            try fixed(4, "flow control credit")
            return .flowControlCredit(identifier: id, cid: try r.u16le("CID"), credits: try r.u16le("credits"))
        default:
            return .unknown(code: code, identifier: id, data: Array(try r.bytes(r.remaining, "data")))
        }
    }
}

/// What the LE signalling responder asks of the host.
public enum SignallingAction: Sendable, Hashable {
    /// A signalling payload to send on CID 0x0005 (wrap with `l2capBasicFrame`).
    case send([UInt8])
    /// Issue HCI LE Connection Update with these parameters (1.25 ms, events, 10 ms).
    case updateConnection(intervalMin: UInt16, intervalMax: UInt16, latency: UInt16, supervisionTimeout: UInt16)
}

/// The central's side of the LE signalling channel, Core v5.4 Vol 3 Part A 4.
///
/// We open no dynamic channels, so:
/// - Connection Parameter Update Request (4.20) is accepted (result 0x0000, then `.updateConnection`)
///   when `isValidConnectionParameters` holds, rejected (0x0001) otherwise.
/// - LE Credit Based Connection Request is refused with result 0x0002 "SPSM not supported" (4.23).
/// - Disconnection Request gets Command Reject "invalid CID in request" (0x0002) carrying the two
///   CIDs (we have no such channel).
/// - Unknown codes get Command Reject "command not understood" (0x0000) with the same identifier.
/// - Command Reject, the responses and Flow Control Credit we receive are ignored (counted).
/// - Malformed input: fewer than 4 octets (no complete header) or identifier 0x00 (illegal,
///   Vol 3 Part A 4) is ignored (counted); a complete header whose length or data size is wrong
///   gets Command Reject "command not understood" with its identifier. Nothing traps.
public struct LESignallingResponder: Sendable {
    /// Commands ignored (unanswerable input, or responses we never asked for).
    public private(set) var ignoredCount = 0

    public init() {}

    /// Valid connection parameters per Core v5.4 Vol 3 Part A 4.20 and Vol 6 Part B 4.5.2:
    /// 6 ≤ min ≤ max ≤ 3200 (×1.25 ms), latency ≤ 499, timeout 10...3200 (×10 ms) and
    /// timeout × 10 ms > (1 + latency) × max × 1.25 ms × 2, i.e. timeout × 4 > (1 + latency) × max.
    public static func isValidConnectionParameters(intervalMin: UInt16, intervalMax: UInt16, latency: UInt16,
                                                   timeout: UInt16) -> Bool {
        guard intervalMin >= 6, intervalMin <= intervalMax, intervalMax <= 3200 else { return false }
        guard latency <= 499, timeout >= 10, timeout <= 3200 else { return false }
        return UInt32(timeout) * 4 > (1 + UInt32(latency)) * UInt32(intervalMax)
    }

    public mutating func receive(_ payload: [UInt8]) -> [SignallingAction] {
        guard payload.count >= 4, payload[1] != 0 else {
            ignoredCount += 1
            return []
        }
        let id = payload[1]
        let command: LESignallingCommand
        do {
            command = try LESignallingCommand.decode(payload)
        } catch {
            return [.send(LESignallingCommand.commandReject(
                identifier: id, reason: L2CAPRejectReason.commandNotUnderstood, data: []).encode())]
        }
        switch command {
        case .connectionParameterUpdateRequest(_, let mn, let mx, let lat, let to):
            if Self.isValidConnectionParameters(intervalMin: mn, intervalMax: mx, latency: lat, timeout: to) {
                return [.send(LESignallingCommand.connectionParameterUpdateResponse(identifier: id, result: 0x0000).encode()),
                        .updateConnection(intervalMin: mn, intervalMax: mx, latency: lat, supervisionTimeout: to)]
            }
            return [.send(LESignallingCommand.connectionParameterUpdateResponse(identifier: id, result: 0x0001).encode())]
        case .leCreditBasedConnectionRequest:
            return [.send(LESignallingCommand.leCreditBasedConnectionResponse(
                identifier: id, destinationCID: 0, mtu: 0, mps: 0, initialCredits: 0,
                result: LECreditBasedConnectionResult.spsmNotSupported).encode())]
        case .disconnectionRequest(_, let dcid, let scid):
            var data = ByteWriter()
            data.u16(dcid); data.u16(scid)
            return [.send(LESignallingCommand.commandReject(
                identifier: id, reason: L2CAPRejectReason.invalidCIDInRequest, data: data.bytes).encode())]
        case .unknown:
            return [.send(LESignallingCommand.commandReject(
                identifier: id, reason: L2CAPRejectReason.commandNotUnderstood, data: []).encode())]
        case .commandReject, .disconnectionResponse, .connectionParameterUpdateResponse,
             .leCreditBasedConnectionResponse, .flowControlCredit:
            ignoredCount += 1
            return []
        }
    }
}

/// Little-endian byte builder used by the encoders.
struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8)) }
    mutating func append(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }
}
