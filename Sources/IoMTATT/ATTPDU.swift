import IoMTCore
import IoMTHCI

/// ATT error codes, Core v5.4 Vol 3 Part F 3.4.1.1 (Table 3.4) and the common profile error codes
/// of Core Specification Supplement Part B 1.2. Open: unknown codes survive.
public struct ATTErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let invalidHandle = ATTErrorCode(rawValue: 0x01)
    public static let readNotPermitted = ATTErrorCode(rawValue: 0x02)
    public static let writeNotPermitted = ATTErrorCode(rawValue: 0x03)
    public static let invalidPDU = ATTErrorCode(rawValue: 0x04)
    public static let insufficientAuthentication = ATTErrorCode(rawValue: 0x05)
    public static let requestNotSupported = ATTErrorCode(rawValue: 0x06)
    public static let invalidOffset = ATTErrorCode(rawValue: 0x07)
    public static let insufficientAuthorization = ATTErrorCode(rawValue: 0x08)
    public static let prepareQueueFull = ATTErrorCode(rawValue: 0x09)
    public static let attributeNotFound = ATTErrorCode(rawValue: 0x0A)
    public static let attributeNotLong = ATTErrorCode(rawValue: 0x0B)
    public static let encryptionKeySizeTooShort = ATTErrorCode(rawValue: 0x0C)
    public static let invalidAttributeValueLength = ATTErrorCode(rawValue: 0x0D)
    public static let unlikelyError = ATTErrorCode(rawValue: 0x0E)
    public static let insufficientEncryption = ATTErrorCode(rawValue: 0x0F)
    public static let unsupportedGroupType = ATTErrorCode(rawValue: 0x10)
    public static let insufficientResources = ATTErrorCode(rawValue: 0x11)
    public static let databaseOutOfSync = ATTErrorCode(rawValue: 0x12)
    public static let valueNotAllowed = ATTErrorCode(rawValue: 0x13)
    /// Supplement Part B 1.2.
    public static let cccdImproperlyConfigured = ATTErrorCode(rawValue: 0xFD)
    public static let procedureAlreadyInProgress = ATTErrorCode(rawValue: 0xFE)
    public static let outOfRange = ATTErrorCode(rawValue: 0xFF)

    /// Application errors 0x80...0x9F, defined by the higher layer.
    public var isApplicationError: Bool { rawValue >= 0x80 && rawValue <= 0x9F }
    /// The errors a host fixes by pairing / encrypting and retrying.
    public var isSecurityError: Bool {
        self == .insufficientAuthentication || self == .insufficientEncryption
            || self == .insufficientAuthorization || self == .encryptionKeySizeTooShort
    }

    public var description: String {
        switch rawValue {
        case 0x01: "invalid handle"
        case 0x02: "read not permitted"
        case 0x03: "write not permitted"
        case 0x04: "invalid PDU"
        case 0x05: "insufficient authentication"
        case 0x06: "request not supported"
        case 0x07: "invalid offset"
        case 0x08: "insufficient authorization"
        case 0x09: "prepare queue full"
        case 0x0A: "attribute not found"
        case 0x0B: "attribute not long"
        case 0x0C: "encryption key size too short"
        case 0x0D: "invalid attribute value length"
        case 0x0E: "unlikely error"
        case 0x0F: "insufficient encryption"
        case 0x10: "unsupported group type"
        case 0x11: "insufficient resources"
        case 0x12: "database out of sync"
        case 0x13: "value not allowed"
        case 0x80...0x9F: "application error 0x" + String(rawValue, radix: 16)
        case 0xFD: "CCCD improperly configured"
        case 0xFE: "procedure already in progress"
        case 0xFF: "out of range"
        default: "error 0x" + String(rawValue, radix: 16)
        }
    }
}

/// ATT opcodes, Core v5.4 Vol 3 Part F 3.4.8 (Table 3.37).
public enum ATTOpcode {
    public static let errorResponse: UInt8 = 0x01
    public static let exchangeMTURequest: UInt8 = 0x02
    public static let exchangeMTUResponse: UInt8 = 0x03
    public static let findInformationRequest: UInt8 = 0x04
    public static let findInformationResponse: UInt8 = 0x05
    public static let findByTypeValueRequest: UInt8 = 0x06
    public static let findByTypeValueResponse: UInt8 = 0x07
    public static let readByTypeRequest: UInt8 = 0x08
    public static let readByTypeResponse: UInt8 = 0x09
    public static let readRequest: UInt8 = 0x0A
    public static let readResponse: UInt8 = 0x0B
    public static let readBlobRequest: UInt8 = 0x0C
    public static let readBlobResponse: UInt8 = 0x0D
    public static let readMultipleRequest: UInt8 = 0x0E
    public static let readMultipleResponse: UInt8 = 0x0F
    public static let readByGroupTypeRequest: UInt8 = 0x10
    public static let readByGroupTypeResponse: UInt8 = 0x11
    public static let writeRequest: UInt8 = 0x12
    public static let writeResponse: UInt8 = 0x13
    public static let writeCommand: UInt8 = 0x52
    public static let signedWriteCommand: UInt8 = 0xD2
    public static let prepareWriteRequest: UInt8 = 0x16
    public static let prepareWriteResponse: UInt8 = 0x17
    public static let executeWriteRequest: UInt8 = 0x18
    public static let executeWriteResponse: UInt8 = 0x19
    public static let handleValueNotification: UInt8 = 0x1B
    public static let handleValueIndication: UInt8 = 0x1D
    public static let handleValueConfirmation: UInt8 = 0x1E
    public static let readMultipleVariableRequest: UInt8 = 0x20
    public static let readMultipleVariableResponse: UInt8 = 0x21
    public static let multipleHandleValueNotification: UInt8 = 0x23

    /// Command flag (bit 6), Vol 3 Part F 3.3.1: no response is ever sent.
    public static func isCommand(_ opcode: UInt8) -> Bool { opcode & 0x40 != 0 }
}

/// An ATT decoding failure naming the field.
public struct ATTDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
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

/// Handle + UUID (Find Information Response entry), Vol 3 Part F 3.4.3.2.
public struct ATTHandleUUID: Hashable, Sendable {
    public var handle: UInt16
    public var uuid: BluetoothUUID
    public init(handle: UInt16, uuid: BluetoothUUID) { self.handle = handle; self.uuid = uuid }
}

/// Found Attribute Handle + Group End Handle (Find By Type Value Response), Vol 3 Part F 3.4.3.4.
public struct ATTHandleRange: Hashable, Sendable {
    public var found: UInt16
    public var groupEnd: UInt16
    public init(found: UInt16, groupEnd: UInt16) { self.found = found; self.groupEnd = groupEnd }
}

/// Handle + value (Read By Type Response entry, Multiple Handle Value Notification), Vol 3 Part F 3.4.4.2.
public struct ATTHandleValue: Hashable, Sendable {
    public var handle: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }
}

/// Handle + End Group Handle + value (Read By Group Type Response entry), Vol 3 Part F 3.4.4.10.
public struct ATTGroupData: Hashable, Sendable {
    public var handle: UInt16
    public var endGroup: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, endGroup: UInt16, value: [UInt8]) {
        self.handle = handle; self.endGroup = endGroup; self.value = value
    }
}

/// Every ATT PDU, Core v5.4 Vol 3 Part F 3.4. Unknown opcodes survive as `.unknown`.
///
/// List responses carry entries of equal length (the spec's length/format byte); `encode()` derives
/// that byte from the first entry. Find Information `format` 0x01 encodes UUIDs as their 16-bit alias
/// (octets 12 and 13 of the 128-bit form), 0x02 as 128 bits.
public enum ATTPDU: Sendable, Hashable {
    /// 0x01, 3.4.1.1.
    case errorResponse(requestOpcode: UInt8, handle: UInt16, error: ATTErrorCode)
    /// 0x02 / 0x03, 3.4.2.
    case exchangeMTURequest(clientRxMTU: UInt16)
    case exchangeMTUResponse(serverRxMTU: UInt16)
    /// 0x04 / 0x05, 3.4.3.1-2.
    case findInformationRequest(start: UInt16, end: UInt16)
    case findInformationResponse(format: UInt8, entries: [ATTHandleUUID])
    /// 0x06 / 0x07, 3.4.3.3-4. `type` is a 16-bit UUID (Vol 3 Part F 3.4.3.3).
    case findByTypeValueRequest(start: UInt16, end: UInt16, type: UInt16, value: [UInt8])
    case findByTypeValueResponse([ATTHandleRange])
    /// 0x08 / 0x09, 3.4.4.1-2.
    case readByTypeRequest(start: UInt16, end: UInt16, type: BluetoothUUID)
    case readByTypeResponse([ATTHandleValue])
    /// 0x0A / 0x0B, 3.4.4.3-4.
    case readRequest(handle: UInt16)
    case readResponse(value: [UInt8])
    /// 0x0C / 0x0D, 3.4.4.5-6.
    case readBlobRequest(handle: UInt16, offset: UInt16)
    case readBlobResponse(value: [UInt8])
    /// 0x0E / 0x0F, 3.4.4.7-8.
    case readMultipleRequest(handles: [UInt16])
    case readMultipleResponse(values: [UInt8])
    /// 0x10 / 0x11, 3.4.4.9-10.
    case readByGroupTypeRequest(start: UInt16, end: UInt16, groupType: BluetoothUUID)
    case readByGroupTypeResponse([ATTGroupData])
    /// 0x12 / 0x13, 3.4.5.1-2.
    case writeRequest(handle: UInt16, value: [UInt8])
    case writeResponse
    /// 0x52, 3.4.5.3.
    case writeCommand(handle: UInt16, value: [UInt8])
    /// 0xD2, 3.4.5.4. We never sign; decoded so a peer's PDU is recognised.
    case signedWriteCommand(handle: UInt16, value: [UInt8], signature: [UInt8])
    /// 0x16 / 0x17, 3.4.6.1-2.
    case prepareWriteRequest(handle: UInt16, offset: UInt16, value: [UInt8])
    case prepareWriteResponse(handle: UInt16, offset: UInt16, value: [UInt8])
    /// 0x18 / 0x19, 3.4.6.3-4. Flags 0x00 cancel, 0x01 write.
    case executeWriteRequest(flags: UInt8)
    case executeWriteResponse
    /// 0x1B, 3.4.7.1.
    case handleValueNotification(handle: UInt16, value: [UInt8])
    /// 0x1D, 3.4.7.2.
    case handleValueIndication(handle: UInt16, value: [UInt8])
    /// 0x1E, 3.4.7.3.
    case handleValueConfirmation
    /// 0x20 / 0x21, 3.4.4.11-12. Each response value is carried as Length (2) + value; a last
    /// value truncated by the MTU keeps only the octets present.
    case readMultipleVariableRequest(handles: [UInt16])
    case readMultipleVariableResponse(values: [[UInt8]])
    /// 0x23, 3.4.7.4: Handle (2), Length (2), value, repeated.
    case multipleHandleValueNotification([ATTHandleValue])
    case unknown(opcode: UInt8, parameters: [UInt8])

    public var opcode: UInt8 {
        switch self {
        case .errorResponse: 0x01
        case .exchangeMTURequest: 0x02
        case .exchangeMTUResponse: 0x03
        case .findInformationRequest: 0x04
        case .findInformationResponse: 0x05
        case .findByTypeValueRequest: 0x06
        case .findByTypeValueResponse: 0x07
        case .readByTypeRequest: 0x08
        case .readByTypeResponse: 0x09
        case .readRequest: 0x0A
        case .readResponse: 0x0B
        case .readBlobRequest: 0x0C
        case .readBlobResponse: 0x0D
        case .readMultipleRequest: 0x0E
        case .readMultipleResponse: 0x0F
        case .readByGroupTypeRequest: 0x10
        case .readByGroupTypeResponse: 0x11
        case .writeRequest: 0x12
        case .writeResponse: 0x13
        case .writeCommand: 0x52
        case .signedWriteCommand: 0xD2
        case .prepareWriteRequest: 0x16
        case .prepareWriteResponse: 0x17
        case .executeWriteRequest: 0x18
        case .executeWriteResponse: 0x19
        case .handleValueNotification: 0x1B
        case .handleValueIndication: 0x1D
        case .handleValueConfirmation: 0x1E
        case .readMultipleVariableRequest: 0x20
        case .readMultipleVariableResponse: 0x21
        case .multipleHandleValueNotification: 0x23
        case .unknown(let op, _): op
        }
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u8(opcode)
        switch self {
        case .errorResponse(let op, let h, let e):
            w.u8(op); w.u16(h); w.u8(e.rawValue)
        case .exchangeMTURequest(let m), .exchangeMTUResponse(let m):
            w.u16(m)
        case .findInformationRequest(let s, let e):
            w.u16(s); w.u16(e)
        case .findInformationResponse(let format, let entries):
            w.u8(format)
            for e in entries {
                w.u16(e.handle)
                if format == 0x01 { w.append(e.uuid.bytes128[12...13]) } else { w.append(e.uuid.bytes128) }
            }
        case .findByTypeValueRequest(let s, let e, let t, let v):
            w.u16(s); w.u16(e); w.u16(t); w.append(v)
        case .findByTypeValueResponse(let ranges):
            for r in ranges { w.u16(r.found); w.u16(r.groupEnd) }
        case .readByTypeRequest(let s, let e, let t), .readByGroupTypeRequest(let s, let e, let t):
            w.u16(s); w.u16(e); w.append(t.shortestWireBytes)
        case .readByTypeResponse(let entries):
            w.u8(UInt8(truncatingIfNeeded: 2 + (entries.first?.value.count ?? 0)))
            for e in entries { w.u16(e.handle); w.append(e.value) }
        case .readRequest(let h):
            w.u16(h)
        case .readResponse(let v), .readBlobResponse(let v), .readMultipleResponse(let v):
            w.append(v)
        case .readBlobRequest(let h, let o):
            w.u16(h); w.u16(o)
        case .readMultipleRequest(let hs), .readMultipleVariableRequest(let hs):
            for h in hs { w.u16(h) }
        case .readByGroupTypeResponse(let entries):
            w.u8(UInt8(truncatingIfNeeded: 4 + (entries.first?.value.count ?? 0)))
            for e in entries { w.u16(e.handle); w.u16(e.endGroup); w.append(e.value) }
        case .writeRequest(let h, let v), .writeCommand(let h, let v),
             .handleValueNotification(let h, let v), .handleValueIndication(let h, let v):
            w.u16(h); w.append(v)
        case .signedWriteCommand(let h, let v, let sig):
            w.u16(h); w.append(v); w.append(sig)
        case .prepareWriteRequest(let h, let o, let v), .prepareWriteResponse(let h, let o, let v):
            w.u16(h); w.u16(o); w.append(v)
        case .executeWriteRequest(let f):
            w.u8(f)
        case .writeResponse, .executeWriteResponse, .handleValueConfirmation:
            break
        case .readMultipleVariableResponse(let values):
            for v in values { w.u16(UInt16(truncatingIfNeeded: v.count)); w.append(v) }
        case .multipleHandleValueNotification(let entries):
            for e in entries { w.u16(e.handle); w.u16(UInt16(truncatingIfNeeded: e.value.count)); w.append(e.value) }
        case .unknown(_, let p):
            w.append(p)
        }
        return w.bytes
    }

    /// Decodes one ATT PDU (the whole payload of a CID 0x0004 B-frame). Fixed-size PDUs with extra
    /// octets are rejected naming the PDU; list responses whose entries don't divide evenly name the list.
    public static func decode(_ bytes: [UInt8]) throws(ATTDecodeError) -> ATTPDU {
        do {
            return try decodeUntyped(bytes)
        } catch let e as ByteReaderError {
            throw ATTDecodeError(e)
        } catch let e as ATTDecodeError {
            throw e
        } catch {
            throw ATTDecodeError(field: "PDU", reason: "\(error)")
        }
    }

    private static func decodeUntyped(_ bytes: [UInt8]) throws -> ATTPDU {
        var r = ByteReader(bytes)
        let op = try r.u8("opcode")
        func end(_ name: String) throws(ATTDecodeError) {
            if !r.isAtEnd {
                throw ATTDecodeError(field: name, reason: "\(r.remaining) unexpected trailing octet(s)")
            }
        }
        func rest() -> [UInt8] { Array(bytes[min(r.offset, bytes.count)...]) }
        func uuid(_ field: String) throws -> BluetoothUUID {
            let raw = rest()
            guard raw.count == 2 || raw.count == 16, let u = BluetoothUUID(wireBytes: raw) else {
                throw ATTDecodeError(field: field, reason: "\(raw.count) octet(s), expected 2 or 16")
            }
            try r.skip(raw.count, "UUID")
            return u
        }
        func handles(_ field: String) throws -> [UInt16] {
            guard r.remaining >= 4, r.remaining % 2 == 0 else {
                throw ATTDecodeError(field: field, reason: "\(r.remaining) octet(s): need an even count of at least 4")
            }
            var hs: [UInt16] = []
            while !r.isAtEnd { hs.append(try r.u16le("handle")) }
            return hs
        }
        switch op {
        case 0x01:
            let p = ATTPDU.errorResponse(requestOpcode: try r.u8("request opcode in error"),
                                         handle: try r.u16le("attribute handle in error"),
                                         error: ATTErrorCode(rawValue: try r.u8("error code")))
            try end("error response"); return p
        case 0x02, 0x03:
            let m = try r.u16le(op == 0x02 ? "client rx MTU" : "server rx MTU")
            try end("exchange MTU")
            return op == 0x02 ? .exchangeMTURequest(clientRxMTU: m) : .exchangeMTUResponse(serverRxMTU: m)
        case 0x04:
            let p = ATTPDU.findInformationRequest(start: try r.u16le("starting handle"), end: try r.u16le("ending handle"))
            try end("find information request"); return p
        case 0x05:
            let format = try r.u8("format")
            let size: Int
            switch format {
            case 0x01: size = 4
            case 0x02: size = 18
            default: throw ATTDecodeError(field: "format", reason: "0x\(String(format, radix: 16)) is neither 0x01 nor 0x02")
            }
            guard r.remaining > 0, r.remaining % size == 0 else {
                throw ATTDecodeError(field: "information data",
                                     reason: "\(r.remaining) octet(s) is not a positive multiple of \(size)")
            }
            var entries: [ATTHandleUUID] = []
            while !r.isAtEnd {
                let h = try r.u16le("handle")
                let u = Array(try r.bytes(size - 2, "UUID"))
                guard let uuid = BluetoothUUID(wireBytes: u) else { throw ATTDecodeError(field: "UUID", reason: "bad size") }
                entries.append(ATTHandleUUID(handle: h, uuid: uuid))
            }
            return .findInformationResponse(format: format, entries: entries)
        case 0x06:
            return .findByTypeValueRequest(start: try r.u16le("starting handle"), end: try r.u16le("ending handle"),
                                           type: try r.u16le("attribute type"), value: rest())
        case 0x07:
            guard r.remaining > 0, r.remaining % 4 == 0 else {
                throw ATTDecodeError(field: "handles information list",
                                     reason: "\(r.remaining) octet(s) is not a positive multiple of 4")
            }
            var out: [ATTHandleRange] = []
            while !r.isAtEnd {
                out.append(ATTHandleRange(found: try r.u16le("found attribute handle"), groupEnd: try r.u16le("group end handle")))
            }
            return .findByTypeValueResponse(out)
        case 0x08, 0x10:
            let s = try r.u16le("starting handle")
            let e = try r.u16le("ending handle")
            let t = try uuid(op == 0x08 ? "attribute type" : "attribute group type")
            return op == 0x08 ? .readByTypeRequest(start: s, end: e, type: t)
                : .readByGroupTypeRequest(start: s, end: e, groupType: t)
        case 0x09:
            let len = Int(try r.u8("length"))
            guard len >= 2 else { throw ATTDecodeError(field: "length", reason: "\(len) is below 2") }
            guard r.remaining > 0, r.remaining % len == 0 else {
                throw ATTDecodeError(field: "attribute data list",
                                     reason: "\(r.remaining) octet(s) is not a positive multiple of length \(len)")
            }
            var out: [ATTHandleValue] = []
            while !r.isAtEnd {
                out.append(ATTHandleValue(handle: try r.u16le("attribute handle"), value: Array(try r.bytes(len - 2, "attribute value"))))
            }
            return .readByTypeResponse(out)
        case 0x0A:
            let p = ATTPDU.readRequest(handle: try r.u16le("attribute handle")); try end("read request"); return p
        case 0x0B: return .readResponse(value: rest())
        case 0x0C:
            let p = ATTPDU.readBlobRequest(handle: try r.u16le("attribute handle"), offset: try r.u16le("value offset"))
            try end("read blob request"); return p
        case 0x0D: return .readBlobResponse(value: rest())
        case 0x0E: return .readMultipleRequest(handles: try handles("set of handles"))
        case 0x0F: return .readMultipleResponse(values: rest())
        case 0x11:
            let len = Int(try r.u8("length"))
            guard len >= 4 else { throw ATTDecodeError(field: "length", reason: "\(len) is below 4") }
            guard r.remaining > 0, r.remaining % len == 0 else {
                throw ATTDecodeError(field: "attribute data list",
                                     reason: "\(r.remaining) octet(s) is not a positive multiple of length \(len)")
            }
            var out: [ATTGroupData] = []
            while !r.isAtEnd {
                out.append(ATTGroupData(handle: try r.u16le("attribute handle"), endGroup: try r.u16le("end group handle"),
                                        value: Array(try r.bytes(len - 4, "attribute value"))))
            }
            return .readByGroupTypeResponse(out)
        case 0x12, 0x52, 0x1B, 0x1D:
            let h = try r.u16le("attribute handle")
            let v = rest()
            switch op {
            case 0x12: return .writeRequest(handle: h, value: v)
            case 0x52: return .writeCommand(handle: h, value: v)
            case 0x1B: return .handleValueNotification(handle: h, value: v)
            default: return .handleValueIndication(handle: h, value: v)
            }
        case 0x13: try end("write response"); return .writeResponse
        case 0xD2:
            let h = try r.u16le("attribute handle")
            guard r.remaining >= 12 else {
                throw ATTDecodeError(field: "authentication signature", reason: "needs 12 octet(s), \(r.remaining) left")
            }
            let v = Array(try r.bytes(r.remaining - 12, "attribute value"))
            return .signedWriteCommand(handle: h, value: v, signature: Array(try r.bytes(12, "authentication signature")))
        case 0x16, 0x17:
            let h = try r.u16le("attribute handle")
            let o = try r.u16le("value offset")
            return op == 0x16 ? .prepareWriteRequest(handle: h, offset: o, value: rest())
                : .prepareWriteResponse(handle: h, offset: o, value: rest())
        case 0x18:
            let p = ATTPDU.executeWriteRequest(flags: try r.u8("flags")); try end("execute write request"); return p
        case 0x19: try end("execute write response"); return .executeWriteResponse
        case 0x1E: try end("handle value confirmation"); return .handleValueConfirmation
        case 0x20: return .readMultipleVariableRequest(handles: try handles("set of handles"))
        case 0x21:
            var values: [[UInt8]] = []
            while !r.isAtEnd {
                let n = Int(try r.u16le("value length"))
                values.append(Array(try r.bytes(min(n, r.remaining), "attribute value")))
            }
            return .readMultipleVariableResponse(values: values)
        case 0x23:
            guard !r.isAtEnd else { throw ATTDecodeError(field: "handle length value tuple list", reason: "empty") }
            var out: [ATTHandleValue] = []
            while !r.isAtEnd {
                let h = try r.u16le("attribute handle")
                let n = Int(try r.u16le("value length"))
                out.append(ATTHandleValue(handle: h, value: Array(try r.bytes(n, "attribute value"))))
            }
            return .multipleHandleValueNotification(out)
        default:
            return .unknown(opcode: op, parameters: rest())
        }
    }
}
