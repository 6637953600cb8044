import IoMTCore

/// Record Access Control Point 0x2A52 (shared by GLS, CGMS, PLXS, GHS): pure request encoding
/// and response decoding. GSS §3.187 Record Access Control Point; Glucose Service 1.0 §3.9;
/// reference §6.3, §6.4. The GATT procedure (write, indications) belongs to the host stack.
public enum RACP {
    /// Op codes (reference §6.3). Open set.
    public struct OpCode: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let reportStoredRecords = OpCode(rawValue: 0x01)
        public static let deleteStoredRecords = OpCode(rawValue: 0x02)
        public static let abortOperation = OpCode(rawValue: 0x03)
        public static let reportNumberOfStoredRecords = OpCode(rawValue: 0x04)
        public static let numberOfStoredRecordsResponse = OpCode(rawValue: 0x05)
        public static let responseCode = OpCode(rawValue: 0x06)
        public static let combinedReport = OpCode(rawValue: 0x07)          // GHS [U]
        public static let combinedReportResponse = OpCode(rawValue: 0x08)  // GHS [U]
    }

    /// Operators (reference §6.3). Open set.
    public struct Operator: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let null = Operator(rawValue: 0x00)
        public static let allRecords = Operator(rawValue: 0x01)
        public static let lessThanOrEqual = Operator(rawValue: 0x02)
        public static let greaterThanOrEqual = Operator(rawValue: 0x03)
        public static let withinRange = Operator(rawValue: 0x04)
        public static let firstRecord = Operator(rawValue: 0x05)
        public static let lastRecord = Operator(rawValue: 0x06)
    }

    /// Filter types: Glucose 0x01 = sequence number (u16), 0x02 = user facing time; CGMS
    /// 0x01 = time offset (u16); GHS 0x01 = record number (u32) (reference §6.3).
    public struct FilterType: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let sequenceNumber = FilterType(rawValue: 0x01)
        public static let userFacingTime = FilterType(rawValue: 0x02)
    }

    /// Response values of op code 0x06 (reference §6.3). Open set.
    public struct ResponseValue: RawRepresentable, Hashable, Sendable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let success = ResponseValue(rawValue: 0x01)
        public static let opCodeNotSupported = ResponseValue(rawValue: 0x02)
        public static let invalidOperator = ResponseValue(rawValue: 0x03)
        public static let operatorNotSupported = ResponseValue(rawValue: 0x04)
        public static let invalidOperand = ResponseValue(rawValue: 0x05)
        public static let noRecordsFound = ResponseValue(rawValue: 0x06)
        public static let abortUnsuccessful = ResponseValue(rawValue: 0x07)
        public static let procedureNotCompleted = ResponseValue(rawValue: 0x08)
        public static let operandNotSupported = ResponseValue(rawValue: 0x09)
        public static let serverBusy = ResponseValue(rawValue: 0x0A)  // GHS [U]
    }

    // MARK: Requests

    /// "Report all stored records": `01 01`.
    public static func reportAllRecords() -> [UInt8] { [0x01, 0x01] }

    /// "Report stored records greater than or equal to sequence number N": `01 03 01 <N LE>`.
    public static func reportRecords(greaterThanOrEqualTo sequence: UInt16) -> [UInt8] {
        [0x01, 0x03, 0x01, UInt8(sequence & 0xFF), UInt8(sequence >> 8)]
    }

    /// Report records with a filter of any width (CGMS time offset u16, GHS record number u32).
    public static func reportRecords(greaterThanOrEqualTo value: UInt32, filter: FilterType, width: Int) -> [UInt8] {
        [0x01, 0x03, filter.rawValue] + (0..<max(0, min(width, 4))).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) }
    }

    /// Report records with sequence numbers in `range` (inclusive): `01 04 01 <min> <max>`.
    public static func reportRecords(in range: ClosedRange<UInt16>) -> [UInt8] {
        [0x01, 0x04, 0x01, UInt8(range.lowerBound & 0xFF), UInt8(range.lowerBound >> 8),
         UInt8(range.upperBound & 0xFF), UInt8(range.upperBound >> 8)]
    }

    /// "Report last (most recent) record": `01 06`; "first record": `01 05`.
    public static func reportLastRecord() -> [UInt8] { [0x01, 0x06] }
    public static func reportFirstRecord() -> [UInt8] { [0x01, 0x05] }

    /// "Report number of stored records" (all): `04 01`.
    public static func reportNumberOfRecords() -> [UInt8] { [0x04, 0x01] }

    /// "Report number of stored records ≥ sequence N": `04 03 01 <N LE>`.
    public static func reportNumberOfRecords(greaterThanOrEqualTo sequence: UInt16) -> [UInt8] {
        [0x04, 0x03, 0x01, UInt8(sequence & 0xFF), UInt8(sequence >> 8)]
    }

    /// "Abort operation": `03 00`.
    public static func abort() -> [UInt8] { [0x03, 0x00] }

    /// "Delete all stored records": `02 01` (only when policy says so, reference §6.4 step 7).
    public static func deleteAllRecords() -> [UInt8] { [0x02, 0x01] }

    /// The incremental download request (reference §6.4 step 5): everything when nothing was
    /// stored yet, else records ≥ last + 1. After sequence 0xFFFF (no "next" number) everything
    /// is requested again; the conditional-create identifier de-duplicates.
    public static func incrementalRequest(lastStoredSequence: UInt16?) -> [UInt8] {
        guard let last = lastStoredSequence, last < UInt16.max else { return reportAllRecords() }
        return reportRecords(greaterThanOrEqualTo: last &+ 1)
    }

    // MARK: Responses

    public enum Response: Hashable, Sendable {
        /// Op code 0x05: number of stored records (1, 2 or 4 octets accepted, reference §6.3 [V S4]).
        case numberOfRecords(UInt32)
        /// Op code 0x06: the request op code and the response value.
        case responseCode(request: OpCode, value: ResponseValue)
        /// Any other op code, kept with its operand.
        case other(opCode: OpCode, operator: Operator, operand: [UInt8])
    }

    /// Decodes an RACP indication from the server.
    public static func decodeResponse(_ bytes: [UInt8]) throws -> Response {
        var r = ByteReader(bytes)
        let op = OpCode(rawValue: try r.u8("racp op code"))
        let oper = Operator(rawValue: try r.u8("racp operator"))
        switch op {
        case .numberOfStoredRecordsResponse:
            switch r.remaining {
            case 1: return .numberOfRecords(UInt32(try r.u8("number of records")))
            case 2: return .numberOfRecords(UInt32(try r.u16le("number of records")))
            case 4: return .numberOfRecords(try r.u32le("number of records"))
            case 0: _ = try r.u16le("number of records"); return .numberOfRecords(0)
            default: throw HealthDecodeError(field: "number of records", reason: "\(r.remaining) octets (1, 2 or 4 expected)")
            }
        case .responseCode:
            let req = OpCode(rawValue: try r.u8("request op code"))
            let value = ResponseValue(rawValue: try r.u8("response code value"))
            return .responseCode(request: req, value: value)
        default:
            return .other(opCode: op, operator: oper, operand: Array(try r.bytes(r.remaining, "operand")))
        }
    }

    /// ATT error codes a server answers an RACP write with. Old profiles (GLS 1.0) use the
    /// application range, newer specs the common profile codes (reference §0.1, §6.4): accept both.
    public enum WriteError: Hashable, Sendable {
        case procedureAlreadyInProgress
        case cccdImproperlyConfigured
        case outOfRange
        case insufficientSecurity
        case other(UInt8)

        public init(attErrorCode c: UInt8) {
            switch c {
            case 0x80, 0xFE: self = .procedureAlreadyInProgress
            case 0x81, 0xFD: self = .cccdImproperlyConfigured
            case 0xFF: self = .outOfRange
            case 0x05, 0x0F: self = .insufficientSecurity
            default: self = .other(c)
            }
        }
    }
}
