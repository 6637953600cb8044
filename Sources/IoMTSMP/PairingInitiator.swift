import Crypto
import IoMTHCI

/// The outcome of a successful pairing.
public struct PairingResult: Sendable, Hashable {
    /// LE Secure Connections (true) or LE legacy pairing.
    public var secureConnections: Bool
    /// MITM-protected (Passkey Entry or Numeric Comparison), Core v5.4 Vol 3 Part H 2.3.5.1.
    public var authenticated: Bool
    /// Negotiated encryption key size, 7...16.
    public var keySize: UInt8
    /// The key to encrypt later connections with: 16 octets **LSB first**, as HCI LE Enable
    /// Encryption / LTK Request Reply take it. LE SC: the f5 LTK; legacy: the LTK the responder
    /// distributed (or the STK when it distributed none: then `bonded` is false).
    public var ltk: [UInt8]
    /// EDIV and Rand to send with `ltk` (both 0 for LE SC and for an STK).
    public var ediv: UInt16
    public var rand: UInt64
    /// The responder's identity address (Identity Address Information), if distributed.
    public var peerIdentity: LEAddress?
    /// The responder's IRK, 16 octets **MSB first** (toolbox order, ready for
    /// `resolvePrivateAddress(_:irk:)`), if distributed.
    public var peerIRK: [UInt8]?
    /// The responder's CSRK as received (LSB first), if distributed.
    public var peerCSRK: [UInt8]?
    /// Both sides asked for bonding and a long-term key exists to store.
    public var bonded: Bool

    public init(secureConnections: Bool, authenticated: Bool, keySize: UInt8, ltk: [UInt8], ediv: UInt16,
                rand: UInt64, peerIdentity: LEAddress?, peerIRK: [UInt8]?, peerCSRK: [UInt8]? = nil, bonded: Bool) {
        self.secureConnections = secureConnections
        self.authenticated = authenticated
        self.keySize = keySize
        self.ltk = ltk
        self.ediv = ediv
        self.rand = rand
        self.peerIdentity = peerIdentity
        self.peerIRK = peerIRK
        self.peerCSRK = peerCSRK
        self.bonded = bonded
    }
}

/// Why pairing ended without keys; `description` is a sentence for the CLI.
public struct PairingFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// The SMP reason (sent or received); nil for a timeout or an encryption failure.
    public var reason: SMPReason?
    /// The peer sent Pairing Failed.
    public var remote: Bool
    /// The 30 s SMP timer expired (Core v5.4 Vol 3 Part H 3.4): no more SMP on this link.
    public var timeout: Bool
    public var description: String

    public init(reason: SMPReason?, remote: Bool, timeout: Bool, description: String) {
        self.reason = reason
        self.remote = remote
        self.timeout = timeout
        self.description = description
    }
}

/// What the host must do for the pairing state machine.
public enum SMPAction: Sendable, Hashable {
    /// Send these octets on the SMP fixed channel (L2CAP CID 0x0006).
    case send([UInt8])
    /// Start encryption (HCI LE Enable Encryption): `ltk` is 16 octets LSB first.
    case startEncryption(ltk: [UInt8], ediv: UInt16, rand: UInt64)
    /// Ask the user for the 6-digit passkey the peer displays; answer with `passkeyEntered`.
    case requestPasskey
    /// Show this passkey (0...999999) to the user, who types it on the peer.
    case displayPasskey(UInt32)
    /// Show this 6-digit value and ask whether the peer shows the same; answer with
    /// `numericComparisonConfirmed`.
    case confirmNumericComparison(UInt32)
    case completed(PairingResult)
    case failed(PairingFailure)
}

/// The central's (initiator's) LE pairing state machine, Core v5.4 Vol 3 Part H 2.3 (phases 1-3),
/// 3.5 (pairing methods), 3.6 (key distribution) and Appendix C's sequence charts.
///
/// Pure: no I/O, no clock; the host feeds SMP PDUs, encryption results, user answers and `now`
/// (milliseconds), and executes the returned `SMPAction`s.
///
/// Choices (documented per the brief):
/// - Pairing Request: AuthReq = SC, bonding if `bonding`, MITM if `requireMITM` or our IO
///   capability is not NoInputNoOutput; no OOB; max key size 16. Initiator key distribution is
///   empty: the central uses a static random address, so it has no IRK to share and needs no
///   signing; responder key distribution asks for EncKey|IdKey when bonding (nothing otherwise).
/// - Security Request, Keypress Notification: ignored here (the host answers a Security Request
///   by calling `start`; see `securityRequestAuth(_:)`).
/// - A PDU that is valid but not expected in the current state fails pairing with
///   Unspecified Reason; an unknown code with Command Not Supported; a malformed PDU with
///   Invalid Parameters.
/// - A peer public key not on P-256 fails with Invalid Parameters; a peer key equal to ours
///   (reflection, Vol 3 Part H 2.3.5.6.1) with DHKey Check Failed.
/// - After `.failed` or `.completed` every input is ignored.
public struct PairingInitiator: Sendable {
    enum Method: Sendable, Hashable {
        case justWorks, numericComparison
        /// Passkey Entry; `initiatorDisplays` false means the initiator's user types it.
        case passkey(initiatorDisplays: Bool)
    }

    enum Phase: Sendable, Hashable {
        case idle, waitPairingResponse
        case waitPublicKey, scWaitPasskeyInput, scWaitConfirm, scWaitRandom, scWaitUserConfirm
        case scPasskeyWaitConfirm, scPasskeyWaitRandom, scWaitDHKeyCheck
        case legacyWaitPasskeyInput, legacyWaitConfirm, legacyWaitRandom
        case waitEncryption, keyDistribution
        case done, failed
    }

    struct Abort: Error {
        var reason: SMPReason
        var detail: String
    }

    public let local: LEAddress
    public let peer: LEAddress
    public let ioCapability: IOCapability
    public let bonding: Bool
    public let requireMITM: Bool
    public let allowLegacy: Bool
    public let timeoutMs: UInt64
    let random: @Sendable (Int) -> [UInt8]
    let privateKey: P256.KeyAgreement.PrivateKey

    var phase: Phase = .idle
    var deadline: UInt64?
    var preq: [UInt8] = []
    var pres: [UInt8] = []
    var ours: PairingFeatures
    var theirs: PairingFeatures?
    var sc = false
    var method: Method = .justWorks
    var keySize: UInt8 = 16
    var passkey: UInt32?
    // LE SC (all MSB first)
    var pkaX: [UInt8] = []
    var pkaY: [UInt8] = []
    var pkbX: [UInt8] = []
    var dhKey: [UInt8] = []
    var na: [UInt8] = []
    var nb: [UInt8] = []
    var peerConfirm: [UInt8] = []
    var round = 0
    var macKey: [UInt8] = []
    var ltk: [UInt8] = []
    // Legacy (MSB first)
    var tk: [UInt8] = []
    var mrand: [UInt8] = []
    var stk: [UInt8] = []
    // Phase 3
    var pendingKeys: [UInt8] = []
    var distributedLTK: [UInt8]?
    var distributedEDIV: UInt16 = 0
    var distributedRand: UInt64 = 0
    var peerIRK: [UInt8]?
    var peerIdentity: LEAddress?
    var peerCSRK: [UInt8]?

    public init(local: LEAddress, peer: LEAddress, ioCapability: IOCapability = .noInputNoOutput,
                bonding: Bool = true, requireMITM: Bool = false, allowLegacy: Bool = true,
                random: @escaping @Sendable (Int) -> [UInt8],
                privateKey: P256.KeyAgreement.PrivateKey? = nil, timeoutMs: UInt64 = 30_000) {
        self.local = local
        self.peer = peer
        self.ioCapability = ioCapability
        self.bonding = bonding
        self.requireMITM = requireMITM
        self.allowLegacy = allowLegacy
        self.random = random
        self.privateKey = privateKey ?? P256.KeyAgreement.PrivateKey()
        self.timeoutMs = timeoutMs
        var auth: AuthRequirements = [.secureConnections]
        if bonding { auth.insert(.bonding) }
        if requireMITM || ioCapability != .noInputNoOutput { auth.insert(.mitm) }
        self.ours = PairingFeatures(ioCapability: ioCapability, oobDataFlag: 0, authReq: auth,
                                    maxEncryptionKeySize: 16, initiatorKeyDistribution: [],
                                    responderKeyDistribution: bonding ? [.encKey, .idKey] : [])
    }

    /// The AuthReq of a Security Request PDU (Core v5.4 Vol 3 Part H 3.6.7), or nil if `pdu` is not one.
    public static func securityRequestAuth(_ pdu: [UInt8]) -> AuthRequirements? {
        if case .securityRequest(let auth)? = try? SMPPDU.decode(pdu) { return auth }
        return nil
    }

    /// When `tick` must next be called (the SMP timeout, Vol 3 Part H 3.4), or nil.
    public var nextDeadline: UInt64? { isActive ? deadline : nil }

    /// Pairing has ended (completed or failed).
    public var isFinished: Bool { phase == .done || phase == .failed }

    var isActive: Bool { phase != .idle && !isFinished }

    // MARK: Inputs

    /// Phase 1: send the Pairing Request (Vol 3 Part H 3.5.1). A second call does nothing.
    public mutating func start(now: UInt64) -> [SMPAction] {
        guard phase == .idle else { return [] }
        let pdu = SMPPDU.pairingRequest(ours)
        preq = pdu.encode()
        phase = .waitPairingResponse
        return [send(pdu, now: now)]
    }

    /// An SMP PDU from the peer. Never traps; a bad PDU fails pairing.
    public mutating func receive(_ bytes: [UInt8], now: UInt64) -> [SMPAction] {
        guard isActive else { return [] }
        if let t = timedOut(now: now) { return t }
        let pdu: SMPPDU
        do {
            pdu = try SMPPDU.decode(bytes)
        } catch {
            return fail(.invalidParameters, "malformed \(error)")
        }
        switch pdu {
        case .pairingFailed(let reason):
            phase = .failed
            deadline = nil
            var text = "the device rejected pairing: \(reason)"
            if reason == .confirmValueFailed, case .passkey = method { text += " (wrong passkey?)" }
            return [.failed(PairingFailure(reason: reason, remote: true, timeout: false, description: text))]
        case .securityRequest, .keypressNotification:
            return []
        case .unknown(let code, _):
            return fail(.commandNotSupported, "the device sent unknown SMP command 0x\(String(code, radix: 16))")
        default:
            break
        }
        do {
            return try handle(pdu, raw: bytes, now: now)
        } catch {
            return fail(error.reason, error.detail)
        }
    }

    /// The result of the encryption the host started for `.startEncryption` (HCI Encryption
    /// Change). Then phase 3 collects the responder's keys (Vol 3 Part H 3.6).
    public mutating func encryptionChanged(success: Bool, keySize: UInt8?, now: UInt64) -> [SMPAction] {
        guard phase == .waitEncryption else { return [] }
        if let t = timedOut(now: now) { return t }
        guard success else {
            phase = .failed
            deadline = nil
            return [.failed(PairingFailure(reason: nil, remote: false, timeout: false,
                                           description: "pairing failed: the link could not be encrypted with the new key"))]
        }
        if let k = keySize, k < 7 {
            return fail(.encryptionKeySize, "encryption key size \(k) is below 7")
        }
        phase = .keyDistribution
        return pendingKeys.isEmpty ? complete() : []
    }

    /// The passkey the user typed (0...999999) after `.requestPasskey`.
    public mutating func passkeyEntered(_ value: UInt32, now: UInt64) -> [SMPAction] {
        guard isActive, case .passkey(initiatorDisplays: false) = method, passkey == nil,
              phase != .waitPairingResponse else { return [] }
        if let t = timedOut(now: now) { return t }
        guard value <= 999_999 else { return fail(.passkeyEntryFailed, "the passkey must have 6 digits") }
        passkey = value
        do {
            switch phase {
            case .scWaitPasskeyInput: return try startPasskeyRound(now: now)
            case .legacyWaitPasskeyInput:
                tk = Self.value128(value)
                return try sendMconfirm(now: now)
            default: return []
            }
        } catch {
            return fail(error.reason, error.detail)
        }
    }

    /// The user's answer to `.confirmNumericComparison`.
    public mutating func numericComparisonConfirmed(_ ok: Bool, now: UInt64) -> [SMPAction] {
        guard phase == .scWaitUserConfirm else { return [] }
        if let t = timedOut(now: now) { return t }
        guard ok else { return fail(.numericComparisonFailed, "the numbers did not match") }
        do {
            return try sendDHKeyCheck(now: now)
        } catch {
            return fail(error.reason, error.detail)
        }
    }

    /// Abandons pairing (the user cancelled a prompt, the host gave up): sends Pairing Failed with
    /// `reason` (Vol 3 Part H 3.5.5; Passkey Entry Failed is what a cancelled passkey prompt sends).
    public mutating func cancel(reason: SMPReason = .passkeyEntryFailed, now: UInt64) -> [SMPAction] {
        guard isActive else { return [] }
        if let t = timedOut(now: now) { return t }
        return fail(reason, "cancelled (\(reason))")
    }

    /// Checks the SMP timeout (Vol 3 Part H 3.4).
    public mutating func tick(now: UInt64) -> [SMPAction] {
        guard isActive else { return [] }
        return timedOut(now: now) ?? []
    }

    // MARK: Internals

    private mutating func timedOut(now: UInt64) -> [SMPAction]? {
        guard let d = deadline, now >= d else { return nil }
        phase = .failed
        deadline = nil
        let secs = timeoutMs / 1000
        return [.failed(PairingFailure(reason: nil, remote: false, timeout: true,
                                       description: "pairing timed out after \(secs) s"))]
    }

    /// Sends Pairing Failed and ends (Vol 3 Part H 3.5.5).
    private mutating func fail(_ reason: SMPReason, _ detail: String) -> [SMPAction] {
        phase = .failed
        deadline = nil
        return [.send(SMPPDU.pairingFailed(reason).encode()),
                .failed(PairingFailure(reason: reason, remote: false, timeout: false,
                                       description: "pairing failed: \(detail)"))]
    }

    /// Queues a PDU and restarts the SMP timer, which Vol 3 Part H 3.4 resets on every command sent.
    private mutating func send(_ pdu: SMPPDU, now: UInt64) -> SMPAction {
        deadline = now + timeoutMs
        return .send(pdu.encode())
    }

    private func rand(_ n: Int) -> [UInt8] {
        let r = random(n)
        return r.count >= n ? Array(r.prefix(n)) : r + [UInt8](repeating: 0, count: n - r.count)
    }

    private static func tb<T>(_ f: () throws(SMPToolboxError) -> T) throws(Abort) -> T {
        do { return try f() } catch { throw Abort(reason: .unspecifiedReason, detail: "internal: \(error)") }
    }

    /// A 32-bit value as a 128-bit MSB-first value (TK from a passkey; r of f6 for Passkey Entry).
    static func value128(_ v: UInt32) -> [UInt8] {
        [UInt8](repeating: 0, count: 12) + [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    /// Address type octet + address, MSB first (A1/A2 of f5/f6).
    static func a(_ addr: LEAddress) -> [UInt8] {
        [addr.type.isRandom ? 1 : 0] + SMPToolbox.msb(addr.address.bytes)
    }

    /// Keeps the `size` least significant octets (Vol 3 Part H 2.3.4); MSB-first input.
    static func mask(_ key: [UInt8], size: UInt8) -> [UInt8] {
        let drop = max(0, 16 - Int(size))
        return [UInt8](repeating: 0, count: min(drop, key.count)) + key.dropFirst(drop)
    }

    /// Table 2.8, Vol 3 Part H 2.3.5.1 (initiator's view).
    static func selectMethod(initiator i: IOCapability, responder r: IOCapability, sc: Bool, mitm: Bool) -> Method {
        guard mitm else { return .justWorks }
        let known: Set<UInt8> = [0, 1, 2, 3, 4]
        guard known.contains(i.rawValue), known.contains(r.rawValue) else { return .justWorks }
        if i == .noInputNoOutput || r == .noInputNoOutput { return .justWorks }
        switch (i, r) {
        case (.displayOnly, .displayOnly), (.displayOnly, .displayYesNo), (.displayYesNo, .displayOnly):
            return .justWorks
        case (.displayOnly, _): return .passkey(initiatorDisplays: true)
        case (.displayYesNo, .displayYesNo): return sc ? .numericComparison : .justWorks
        case (.displayYesNo, .keyboardOnly): return .passkey(initiatorDisplays: true)
        case (.displayYesNo, _): return sc ? .numericComparison : .passkey(initiatorDisplays: true)
        case (.keyboardOnly, _): return .passkey(initiatorDisplays: false)
        case (.keyboardDisplay, .keyboardOnly): return .passkey(initiatorDisplays: true)
        case (.keyboardDisplay, .displayOnly): return .passkey(initiatorDisplays: false)
        default:  // keyboardDisplay with displayYesNo / keyboardDisplay
            if sc { return .numericComparison }
            return r == .displayYesNo ? .passkey(initiatorDisplays: false) : .passkey(initiatorDisplays: true)
        }
    }

    private mutating func handle(_ pdu: SMPPDU, raw: [UInt8], now: UInt64) throws(Abort) -> [SMPAction] {
        switch (phase, pdu) {
        case (.waitPairingResponse, .pairingResponse(let f)):
            return try onPairingResponse(f, raw: raw, now: now)
        case (.waitPublicKey, .pairingPublicKey(let x, let y)):
            return try onPublicKey(x: SMPToolbox.msb(x), y: SMPToolbox.msb(y), now: now)
        case (.scWaitConfirm, .pairingConfirm(let c)):
            peerConfirm = SMPToolbox.msb(c)
            na = rand(16)
            phase = .scWaitRandom
            return [send(.pairingRandom(SMPToolbox.lsb(na)), now: now)]
        case (.scWaitRandom, .pairingRandom(let r)):
            nb = SMPToolbox.msb(r)
            let expected = try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.f4(u: pkbX, v: pkaX, x: nb, z: 0) }
            guard expected == peerConfirm else {
                throw Abort(reason: .confirmValueFailed, detail: "the device's confirm value did not match its random value")
            }
            try deriveSCKeys()
            if method == .numericComparison {
                let v = try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.g2(u: pkaX, v: pkbX, x: na, y: nb) }
                phase = .scWaitUserConfirm
                return [.confirmNumericComparison(v % 1_000_000)]
            }
            return try sendDHKeyCheck(now: now)
        case (.scPasskeyWaitConfirm, .pairingConfirm(let c)):
            peerConfirm = SMPToolbox.msb(c)
            phase = .scPasskeyWaitRandom
            return [send(.pairingRandom(SMPToolbox.lsb(na)), now: now)]
        case (.scPasskeyWaitRandom, .pairingRandom(let r)):
            nb = SMPToolbox.msb(r)
            let bit = passkeyBit(round)
            let expected = try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.f4(u: pkbX, v: pkaX, x: nb, z: bit) }
            guard expected == peerConfirm else {
                throw Abort(reason: .confirmValueFailed, detail: "wrong passkey (the device's confirm value did not match)")
            }
            round += 1
            if round < 20 { return try startPasskeyRound(now: now) }
            try deriveSCKeys()
            return try sendDHKeyCheck(now: now)
        case (.scWaitDHKeyCheck, .pairingDHKeyCheck(let eb)):
            let r = scR()
            let ioCapB: [UInt8] = theirs.map { [$0.authReq.rawValue, $0.oobDataFlag, $0.ioCapability.rawValue] } ?? [0, 0, 0]
            let expected = try Self.tb { () throws(SMPToolboxError) in
                try SMPToolbox.f6(w: macKey, n1: nb, n2: na, r: r, ioCap: ioCapB, a1: Self.a(peer), a2: Self.a(local))
            }
            guard expected == SMPToolbox.msb(eb) else {
                throw Abort(reason: .dhkeyCheckFailed, detail: "the device's DHKey check value did not match")
            }
            phase = .waitEncryption
            return [.startEncryption(ltk: SMPToolbox.lsb(Self.mask(ltk, size: keySize)), ediv: 0, rand: 0)]
        case (.legacyWaitConfirm, .pairingConfirm(let c)):
            peerConfirm = SMPToolbox.msb(c)
            phase = .legacyWaitRandom
            return [send(.pairingRandom(SMPToolbox.lsb(mrand)), now: now)]
        case (.legacyWaitRandom, .pairingRandom(let r)):
            let srand = SMPToolbox.msb(r)
            let expected = try legacyConfirm(srand)
            guard expected == peerConfirm else {
                if case .passkey = method {
                    throw Abort(reason: .confirmValueFailed, detail: "wrong passkey (the device's confirm value did not match)")
                }
                throw Abort(reason: .confirmValueFailed, detail: "the device's confirm value did not match its random value")
            }
            let tk = self.tk, mrand = self.mrand
            stk = Self.mask(try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.s1(k: tk, r1: srand, r2: mrand) }, size: keySize)
            phase = .waitEncryption
            return [.startEncryption(ltk: SMPToolbox.lsb(stk), ediv: 0, rand: 0)]
        case (.keyDistribution, _):
            return try onKey(pdu)
        default:
            throw Abort(reason: .unspecifiedReason, detail: "unexpected SMP command 0x\(String(pdu.code, radix: 16)) in state \(phase)")
        }
    }

    private mutating func onPairingResponse(_ f: PairingFeatures, raw: [UInt8], now: UInt64) throws(Abort) -> [SMPAction] {
        pres = raw
        theirs = f
        guard f.maxEncryptionKeySize >= 7 else {
            throw Abort(reason: .encryptionKeySize, detail: "the device offers a \(f.maxEncryptionKeySize)-octet key (minimum 7)")
        }
        keySize = min(16, f.maxEncryptionKeySize)
        sc = f.authReq.contains(.secureConnections)
        if !sc && !allowLegacy {
            throw Abort(reason: .authenticationRequirements, detail: "the device does not support LE Secure Connections and legacy pairing is not allowed")
        }
        let mitm = ours.authReq.contains(.mitm) || f.authReq.contains(.mitm)
        method = Self.selectMethod(initiator: ioCapability, responder: f.ioCapability, sc: sc, mitm: mitm)
        if requireMITM && method == .justWorks {
            throw Abort(reason: .authenticationRequirements, detail: "MITM protection is required but the device's IO capabilities allow only Just Works")
        }
        // Phase 3 plan (Vol 3 Part H 3.6.1): the responder sends its keys in this order.
        var keys = ours.responderKeyDistribution.intersection(f.responderKeyDistribution)
        if sc { keys.remove(.encKey) }
        pendingKeys = []
        if keys.contains(.encKey) { pendingKeys += [0x06, 0x07] }
        if keys.contains(.idKey) { pendingKeys += [0x08, 0x09] }
        if keys.contains(.signKey) { pendingKeys += [0x0A] }

        var actions: [SMPAction] = []
        if case .passkey(let display) = method {
            if display {
                let r = rand(4)
                let v = (UInt32(r[0]) << 24 | UInt32(r[1]) << 16 | UInt32(r[2]) << 8 | UInt32(r[3])) % 1_000_000
                passkey = v
                actions.append(.displayPasskey(v))
            } else {
                actions.append(.requestPasskey)
            }
        }
        if sc {
            (pkaX, pkaY) = SMPToolbox.publicKeyCoordinates(privateKey)
            phase = .waitPublicKey
            actions.append(send(.pairingPublicKey(x: SMPToolbox.lsb(pkaX), y: SMPToolbox.lsb(pkaY)), now: now))
            return actions
        }
        switch method {
        case .justWorks:
            tk = [UInt8](repeating: 0, count: 16)
            return actions + (try sendMconfirm(now: now))
        case .passkey:
            if let p = passkey {
                tk = Self.value128(p)
                return actions + (try sendMconfirm(now: now))
            }
            phase = .legacyWaitPasskeyInput
            return actions
        case .numericComparison:
            throw Abort(reason: .unspecifiedReason, detail: "internal: numeric comparison without LE Secure Connections")
        }
    }

    private mutating func onPublicKey(x: [UInt8], y: [UInt8], now: UInt64) throws(Abort) -> [SMPAction] {
        if x == pkaX && y == pkaY {
            throw Abort(reason: .dhkeyCheckFailed, detail: "the device reflected our own public key")
        }
        guard let dh = SMPToolbox.dhKey(privateKey: privateKey, peerX: x, peerY: y) else {
            throw Abort(reason: .invalidParameters, detail: "the device's public key is not a point on P-256")
        }
        pkbX = x
        dhKey = dh
        switch method {
        case .justWorks, .numericComparison:
            phase = .scWaitConfirm
            return []
        case .passkey:
            round = 0
            if passkey != nil { return try startPasskeyRound(now: now) }
            phase = .scWaitPasskeyInput
            return []
        }
    }

    private func passkeyBit(_ i: Int) -> UInt8 {
        0x80 | UInt8(((passkey ?? 0) >> UInt32(i)) & 1)
    }

    /// One round of Passkey Entry (Vol 3 Part H 2.3.5.6.3): Cai = f4(PKax, PKbx, Nai, rai).
    private mutating func startPasskeyRound(now: UInt64) throws(Abort) -> [SMPAction] {
        na = rand(16)
        let bit = passkeyBit(round)
        let (pa, pb, n) = (pkaX, pkbX, na)
        let c = try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.f4(u: pa, v: pb, x: n, z: bit) }
        phase = .scPasskeyWaitConfirm
        return [send(.pairingConfirm(SMPToolbox.lsb(c)), now: now)]
    }

    /// ra = rb: the passkey for Passkey Entry, zero otherwise (Vol 3 Part H 2.3.5.6.5).
    private func scR() -> [UInt8] {
        if case .passkey = method { return Self.value128(passkey ?? 0) }
        return [UInt8](repeating: 0, count: 16)
    }

    private mutating func deriveSCKeys() throws(Abort) {
        let (w, n1, n2, a1, a2) = (dhKey, na, nb, Self.a(local), Self.a(peer))
        let keys = try Self.tb { () throws(SMPToolboxError) in try SMPToolbox.f5(w: w, n1: n1, n2: n2, a1: a1, a2: a2) }
        macKey = keys.macKey
        ltk = keys.ltk
    }

    /// Ea = f6(MacKey, Na, Nb, rb, IOcapA, A, B), Vol 3 Part H 2.3.5.6.5.
    private mutating func sendDHKeyCheck(now: UInt64) throws(Abort) -> [SMPAction] {
        let ioCapA: [UInt8] = [ours.authReq.rawValue, ours.oobDataFlag, ours.ioCapability.rawValue]
        let (w, n1, n2, r, a1, a2) = (macKey, na, nb, scR(), Self.a(local), Self.a(peer))
        let ea = try Self.tb { () throws(SMPToolboxError) in
            try SMPToolbox.f6(w: w, n1: n1, n2: n2, r: r, ioCap: ioCapA, a1: a1, a2: a2)
        }
        phase = .scWaitDHKeyCheck
        return [send(.pairingDHKeyCheck(SMPToolbox.lsb(ea)), now: now)]
    }

    /// c1(TK, rand, preq, pres, iat, ia, rat, ra), Vol 3 Part H 2.3.5.5.
    private func legacyConfirm(_ r: [UInt8]) throws(Abort) -> [UInt8] {
        let (k, q, s) = (tk, SMPToolbox.msb(preq), SMPToolbox.msb(pres))
        let (iat, ia): (UInt8, [UInt8]) = (local.type.isRandom ? 1 : 0, SMPToolbox.msb(local.address.bytes))
        let (rat, ra): (UInt8, [UInt8]) = (peer.type.isRandom ? 1 : 0, SMPToolbox.msb(peer.address.bytes))
        return try Self.tb { () throws(SMPToolboxError) in
            try SMPToolbox.c1(k: k, r: r, preq: q, pres: s, iat: iat, ia: ia, rat: rat, ra: ra)
        }
    }

    private mutating func sendMconfirm(now: UInt64) throws(Abort) -> [SMPAction] {
        mrand = rand(16)
        let c = try legacyConfirm(mrand)
        phase = .legacyWaitConfirm
        return [send(.pairingConfirm(SMPToolbox.lsb(c)), now: now)]
    }

    /// Phase 3 (Vol 3 Part H 3.6.1): the responder's keys, in the spec's order.
    private mutating func onKey(_ pdu: SMPPDU) throws(Abort) -> [SMPAction] {
        guard let next = pendingKeys.first, next == pdu.code else {
            throw Abort(reason: .unspecifiedReason, detail: "unexpected SMP command 0x\(String(pdu.code, radix: 16)) during key distribution")
        }
        pendingKeys.removeFirst()
        switch pdu {
        case .encryptionInformation(let k): distributedLTK = k
        case .centralIdentification(let ediv, let r):
            distributedEDIV = ediv
            distributedRand = r
        case .identityInformation(let irk): peerIRK = SMPToolbox.msb(irk)
        case .identityAddressInformation(let a):
            // Vol 3 Part H 3.6.5: AddrType 0x00 public, 0x01 static random.
            peerIdentity = LEAddress(a.address, type: a.type.rawValue == 0 ? .publicDevice : .randomDevice)
        case .signingInformation(let k): peerCSRK = k
        default: break
        }
        // We distribute no keys of our own (see the type's documentation).
        return pendingKeys.isEmpty ? complete() : []
    }

    private mutating func complete() -> [SMPAction] {
        phase = .done
        deadline = nil
        let bothBond = ours.authReq.contains(.bonding) && (theirs?.authReq.contains(.bonding) ?? false)
        let result: PairingResult
        if sc {
            result = PairingResult(secureConnections: true, authenticated: method != .justWorks, keySize: keySize,
                                   ltk: SMPToolbox.lsb(Self.mask(ltk, size: keySize)), ediv: 0, rand: 0,
                                   peerIdentity: peerIdentity, peerIRK: peerIRK, peerCSRK: peerCSRK, bonded: bothBond)
        } else if let k = distributedLTK {
            result = PairingResult(secureConnections: false, authenticated: method != .justWorks, keySize: keySize,
                                   ltk: k, ediv: distributedEDIV, rand: distributedRand,
                                   peerIdentity: peerIdentity, peerIRK: peerIRK, peerCSRK: peerCSRK, bonded: bothBond)
        } else {
            result = PairingResult(secureConnections: false, authenticated: method != .justWorks, keySize: keySize,
                                   ltk: SMPToolbox.lsb(stk), ediv: 0, rand: 0,
                                   peerIdentity: peerIdentity, peerIRK: peerIRK, peerCSRK: peerCSRK, bonded: false)
        }
        return [.completed(result)]
    }
}
