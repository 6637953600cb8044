import IoMTCore
import IoMTHCI

/// IO capability, Core v5.4 Vol 3 Part H 3.5.1 Table 3.4. Open: unknown values survive.
public struct IOCapability: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let displayOnly = IOCapability(rawValue: 0x00)
    public static let displayYesNo = IOCapability(rawValue: 0x01)
    public static let keyboardOnly = IOCapability(rawValue: 0x02)
    public static let noInputNoOutput = IOCapability(rawValue: 0x03)
    public static let keyboardDisplay = IOCapability(rawValue: 0x04)
    public var description: String {
        switch rawValue {
        case 0: "DisplayOnly"
        case 1: "DisplayYesNo"
        case 2: "KeyboardOnly"
        case 3: "NoInputNoOutput"
        case 4: "KeyboardDisplay"
        default: "IOCapability(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// AuthReq flags, Core v5.4 Vol 3 Part H 3.5.1 Figure 3.3. Bonding_Flags occupy bits 0-1
/// (`0b01` = bonding); reserved bits survive in `rawValue`.
public struct AuthRequirements: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let bonding = AuthRequirements(rawValue: 0x01)
    public static let mitm = AuthRequirements(rawValue: 0x04)
    public static let secureConnections = AuthRequirements(rawValue: 0x08)
    public static let keypress = AuthRequirements(rawValue: 0x10)
    public static let ct2 = AuthRequirements(rawValue: 0x20)
}

/// Initiator/Responder Key Distribution fields, Core v5.4 Vol 3 Part H 3.6.1 Figure 3.11.
public struct KeyDistribution: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// LTK (Encryption Information + Central Identification) in legacy pairing; ignored for LE SC.
    public static let encKey = KeyDistribution(rawValue: 0x01)
    /// IRK + identity address.
    public static let idKey = KeyDistribution(rawValue: 0x02)
    /// CSRK.
    public static let signKey = KeyDistribution(rawValue: 0x04)
    /// Derive a BR/EDR link key (cross-transport; not used here).
    public static let linkKey = KeyDistribution(rawValue: 0x08)
}

/// Pairing Failed reason codes, Core v5.4 Vol 3 Part H 3.5.5 Table 3.7. Open.
public struct SMPReason: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let passkeyEntryFailed = SMPReason(rawValue: 0x01)
    public static let oobNotAvailable = SMPReason(rawValue: 0x02)
    public static let authenticationRequirements = SMPReason(rawValue: 0x03)
    public static let confirmValueFailed = SMPReason(rawValue: 0x04)
    public static let pairingNotSupported = SMPReason(rawValue: 0x05)
    public static let encryptionKeySize = SMPReason(rawValue: 0x06)
    public static let commandNotSupported = SMPReason(rawValue: 0x07)
    public static let unspecifiedReason = SMPReason(rawValue: 0x08)
    public static let repeatedAttempts = SMPReason(rawValue: 0x09)
    public static let invalidParameters = SMPReason(rawValue: 0x0A)
    public static let dhkeyCheckFailed = SMPReason(rawValue: 0x0B)
    public static let numericComparisonFailed = SMPReason(rawValue: 0x0C)
    public static let brEdrPairingInProgress = SMPReason(rawValue: 0x0D)
    public static let crossTransportKeyDerivationNotAllowed = SMPReason(rawValue: 0x0E)
    public static let keyRejected = SMPReason(rawValue: 0x0F)
    public static let busy = SMPReason(rawValue: 0x10)

    public var description: String {
        switch rawValue {
        case 0x01: "passkey entry failed"
        case 0x02: "OOB not available"
        case 0x03: "authentication requirements not met"
        case 0x04: "confirm value failed"
        case 0x05: "pairing not supported"
        case 0x06: "encryption key size too short"
        case 0x07: "command not supported"
        case 0x08: "unspecified reason"
        case 0x09: "repeated attempts"
        case 0x0A: "invalid parameters"
        case 0x0B: "DHKey check failed"
        case 0x0C: "numeric comparison failed"
        case 0x0D: "BR/EDR pairing in progress"
        case 0x0E: "cross-transport key derivation not allowed"
        case 0x0F: "key rejected"
        case 0x10: "busy"
        default: "reason 0x\(String(rawValue, radix: 16))"
        }
    }
}

/// Keypress notification type, Core v5.4 Vol 3 Part H 3.5.8 Table 3.9. Open.
public struct KeypressType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let entryStarted = KeypressType(rawValue: 0)
    public static let digitEntered = KeypressType(rawValue: 1)
    public static let digitErased = KeypressType(rawValue: 2)
    public static let cleared = KeypressType(rawValue: 3)
    public static let entryCompleted = KeypressType(rawValue: 4)
}

/// The six parameter octets of Pairing Request / Pairing Response, Core v5.4 Vol 3 Part H 3.5.1/3.5.2.
public struct PairingFeatures: Hashable, Sendable {
    public var ioCapability: IOCapability
    /// 0x00 OOB data not present, 0x01 present.
    public var oobDataFlag: UInt8
    public var authReq: AuthRequirements
    /// 7...16.
    public var maxEncryptionKeySize: UInt8
    public var initiatorKeyDistribution: KeyDistribution
    public var responderKeyDistribution: KeyDistribution

    public init(ioCapability: IOCapability, oobDataFlag: UInt8 = 0, authReq: AuthRequirements,
                maxEncryptionKeySize: UInt8 = 16, initiatorKeyDistribution: KeyDistribution,
                responderKeyDistribution: KeyDistribution) {
        self.ioCapability = ioCapability
        self.oobDataFlag = oobDataFlag
        self.authReq = authReq
        self.maxEncryptionKeySize = maxEncryptionKeySize
        self.initiatorKeyDistribution = initiatorKeyDistribution
        self.responderKeyDistribution = responderKeyDistribution
    }

    var octets: [UInt8] {
        [ioCapability.rawValue, oobDataFlag, authReq.rawValue, maxEncryptionKeySize,
         initiatorKeyDistribution.rawValue, responderKeyDistribution.rawValue]
    }
}

/// Why an SMP PDU could not be decoded.
public enum SMPDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No code octet.
    case empty
    /// A field ran past the end (the `ByteReaderError` names it).
    case truncated(ByteReaderError)
    /// Octets after the last field of a fixed-length command.
    case trailingBytes(code: UInt8, count: Int)

    /// The field the error is about.
    public var field: String {
        switch self {
        case .empty: "code"
        case .truncated(let e): e.field
        case .trailingBytes: "end"
        }
    }

    public var description: String {
        switch self {
        case .empty: "empty SMP PDU"
        case .truncated(let e): "SMP: \(e)"
        case .trailingBytes(let code, let count): "SMP command 0x\(String(code, radix: 16)): \(count) unexpected trailing octet(s)"
        }
    }
}

/// An SMP command, Core v5.4 Vol 3 Part H 3.3 and 3.5/3.6.
///
/// Multi-octet values are kept exactly as on the wire: **least-significant octet first**
/// (confirm/random values, keys, public key coordinates, addresses). Convert with
/// `SMPToolbox.msb(_:)` before calling the toolbox (see `SMPToolbox` for the byte-order note).
public enum SMPPDU: Sendable, Hashable {
    case pairingRequest(PairingFeatures)                       // 0x01
    case pairingResponse(PairingFeatures)                      // 0x02
    case pairingConfirm([UInt8])                               // 0x03, 16 octets
    case pairingRandom([UInt8])                                // 0x04, 16 octets
    case pairingFailed(SMPReason)                              // 0x05
    case encryptionInformation(ltk: [UInt8])                   // 0x06, 16 octets
    case centralIdentification(ediv: UInt16, rand: UInt64)     // 0x07
    case identityInformation(irk: [UInt8])                     // 0x08, 16 octets
    case identityAddressInformation(LEAddress)                 // 0x09
    case signingInformation(csrk: [UInt8])                     // 0x0A, 16 octets
    case securityRequest(AuthRequirements)                     // 0x0B
    case pairingPublicKey(x: [UInt8], y: [UInt8])              // 0x0C, 32 + 32 octets
    case pairingDHKeyCheck([UInt8])                            // 0x0D, 16 octets
    case keypressNotification(KeypressType)                    // 0x0E
    /// A code this module does not know; the parameters are kept.
    case unknown(code: UInt8, parameters: [UInt8])

    public var code: UInt8 {
        switch self {
        case .pairingRequest: 0x01
        case .pairingResponse: 0x02
        case .pairingConfirm: 0x03
        case .pairingRandom: 0x04
        case .pairingFailed: 0x05
        case .encryptionInformation: 0x06
        case .centralIdentification: 0x07
        case .identityInformation: 0x08
        case .identityAddressInformation: 0x09
        case .signingInformation: 0x0A
        case .securityRequest: 0x0B
        case .pairingPublicKey: 0x0C
        case .pairingDHKeyCheck: 0x0D
        case .keypressNotification: 0x0E
        case .unknown(let code, _): code
        }
    }

    /// Fixed-width fields are padded with zeros or cut to their size, so `encode()` never traps.
    public func encode() -> [UInt8] {
        func fixed(_ v: [UInt8], _ n: Int) -> [UInt8] {
            v.count >= n ? Array(v.prefix(n)) : v + [UInt8](repeating: 0, count: n - v.count)
        }
        var out: [UInt8] = [code]
        switch self {
        case .pairingRequest(let f), .pairingResponse(let f): out += f.octets
        case .pairingConfirm(let v), .pairingRandom(let v), .pairingDHKeyCheck(let v): out += fixed(v, 16)
        case .pairingFailed(let r): out.append(r.rawValue)
        case .encryptionInformation(let k), .identityInformation(let k), .signingInformation(let k): out += fixed(k, 16)
        case .centralIdentification(let ediv, let rand):
            out += [UInt8(ediv & 0xFF), UInt8(ediv >> 8)]
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: rand >> (8 * UInt64(i)))) }
        case .identityAddressInformation(let a):
            out.append(a.type.rawValue)
            out += fixed(a.address.bytes, 6)
        case .securityRequest(let a): out.append(a.rawValue)
        case .pairingPublicKey(let x, let y): out += fixed(x, 32) + fixed(y, 32)
        case .keypressNotification(let t): out.append(t.rawValue)
        case .unknown(_, let p): out += p
        }
        return out
    }

    /// Decodes one SMP command (the L2CAP payload on CID 0x0006).
    public static func decode(_ bytes: [UInt8]) throws(SMPDecodeError) -> SMPPDU {
        guard let code = bytes.first else { throw .empty }
        var r = ByteReader(bytes, offset: 1)
        let pdu: SMPPDU
        do {
            switch code {
            case 0x01, 0x02:
                let f = PairingFeatures(
                    ioCapability: IOCapability(rawValue: try r.u8("io_capability")),
                    oobDataFlag: try r.u8("oob_data_flag"),
                    authReq: AuthRequirements(rawValue: try r.u8("auth_req")),
                    maxEncryptionKeySize: try r.u8("max_encryption_key_size"),
                    initiatorKeyDistribution: KeyDistribution(rawValue: try r.u8("initiator_key_distribution")),
                    responderKeyDistribution: KeyDistribution(rawValue: try r.u8("responder_key_distribution")))
                pdu = code == 1 ? .pairingRequest(f) : .pairingResponse(f)
            case 0x03: pdu = .pairingConfirm(Array(try r.bytes(16, "confirm_value")))
            case 0x04: pdu = .pairingRandom(Array(try r.bytes(16, "random_value")))
            case 0x05: pdu = .pairingFailed(SMPReason(rawValue: try r.u8("reason")))
            case 0x06: pdu = .encryptionInformation(ltk: Array(try r.bytes(16, "long_term_key")))
            case 0x07:
                let ediv = try r.u16le("ediv")
                let lo = UInt64(try r.u32le("rand"))
                let hi = UInt64(try r.u32le("rand"))
                pdu = .centralIdentification(ediv: ediv, rand: lo | (hi << 32))
            case 0x08: pdu = .identityInformation(irk: Array(try r.bytes(16, "identity_resolving_key")))
            case 0x09:
                let type = AddressType(rawValue: try r.u8("addr_type"))
                let raw = try r.bytes(6, "bd_addr")
                // Always 6 octets here; the fallback only keeps this free of force-unwraps.
                guard let addr = BDAddress(wireBytes: raw) else {
                    return .unknown(code: code, parameters: Array(bytes.dropFirst()))
                }
                pdu = .identityAddressInformation(LEAddress(addr, type: type))
            case 0x0A: pdu = .signingInformation(csrk: Array(try r.bytes(16, "signature_key")))
            case 0x0B: pdu = .securityRequest(AuthRequirements(rawValue: try r.u8("auth_req")))
            case 0x0C:
                let x = Array(try r.bytes(32, "public_key_x"))
                let y = Array(try r.bytes(32, "public_key_y"))
                pdu = .pairingPublicKey(x: x, y: y)
            case 0x0D: pdu = .pairingDHKeyCheck(Array(try r.bytes(16, "dhkey_check")))
            case 0x0E: pdu = .keypressNotification(KeypressType(rawValue: try r.u8("notification_type")))
            default:
                return .unknown(code: code, parameters: Array(bytes.dropFirst()))
            }
        } catch {
            throw .truncated(error)
        }
        if r.remaining > 0 { throw .trailingBytes(code: code, count: r.remaining) }
        return pdu
    }
}
