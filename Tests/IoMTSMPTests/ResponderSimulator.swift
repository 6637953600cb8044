import Crypto
import IoMTHCI
import IoMTSMP
import Synchronization

/// Deterministic random bytes for tests (SplitMix64 behind a Mutex so the closure is Sendable).
final class SeededRandom: Sendable {
    private let state: Mutex<UInt64>
    init(seed: UInt64) { state = Mutex(seed) }
    func bytes(_ n: Int) -> [UInt8] {
        state.withLock { s in
            var out: [UInt8] = []
            while out.count < n {
                s &+= 0x9E37_79B9_7F4A_7C15
                var z = s
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                for i in 0..<8 where out.count < n { out.append(UInt8(truncatingIfNeeded: z >> (8 * UInt64(i)))) }
            }
            return out
        }
    }
}

/// A peripheral (responder) written from the responder's side of Core v5.4 Vol 3 Part H
/// (2.3.5.5 legacy, 2.3.5.6 LE SC, 3.6 key distribution), with its own keys, to pair against.
/// Values kept MSB first; PDUs carry them LSB first.
struct ResponderSim {
    enum Method: Equatable { case justWorks, numericComparison, passkey(responderDisplays: Bool) }

    var io: IOCapability
    var auth: AuthRequirements
    var maxKeySize: UInt8 = 16
    var keyDistribution: KeyDistribution = [.encKey, .idKey]
    /// The passkey shown on (or typed into) the peripheral.
    var passkey: UInt32 = 123_456
    /// Simulated user answer for numeric comparison.
    var acceptNumericComparison = true
    /// Send a public key that is not on the curve / our peer's own key.
    var corruptPublicKey = false
    var reflectPublicKey = false

    let initiator: LEAddress
    let address: LEAddress
    let key = SMPToolbox.privateKey(scalar: [UInt8](repeating: 0x11, count: 32))!
    let random = SeededRandom(seed: 99)
    let irk: [UInt8] = (0..<16).map { UInt8(0xA0 + $0) }      // MSB first
    let identity = LEAddress(BDAddress("C4:55:66:77:88:99")!, type: .randomDevice)
    let legacyLTK: [UInt8] = (0..<16).map { UInt8(0x30 + $0) } // wire order
    let ediv: UInt16 = 0x4242
    let rand: UInt64 = 0x1122_3344_5566_7788

    var preq: [UInt8] = []
    var pres: [UInt8] = []
    var request: PairingFeatures?
    var sc = false
    var method: Method = .justWorks
    var pkaX: [UInt8] = []
    var dhKey: [UInt8] = []
    var na: [UInt8] = []
    var nb: [UInt8] = []
    var peerConfirm: [UInt8] = []
    var round = 0
    var srand: [UInt8] = []
    /// The key the peripheral will expect encryption with (MSB first).
    var expectedKey: [UInt8] = []
    var failedWith: SMPReason?

    init(io: IOCapability, auth: AuthRequirements, initiator: LEAddress, address: LEAddress) {
        self.io = io
        self.auth = auth
        self.initiator = initiator
        self.address = address
    }

    var tk: [UInt8] {
        if case .passkey = method {
            return [UInt8](repeating: 0, count: 12) + [UInt8(passkey >> 24), UInt8((passkey >> 16) & 0xFF),
                                                       UInt8((passkey >> 8) & 0xFF), UInt8(passkey & 0xFF)]
        }
        return [UInt8](repeating: 0, count: 16)
    }

    static func addr7(_ a: LEAddress) -> [UInt8] { [a.type.isRandom ? 1 : 0] + a.address.bytes.reversed() }

    /// Table 2.8 from the responder's seat (`responderDisplays`).
    static func method(i: IOCapability, r: IOCapability, sc: Bool, mitm: Bool) -> Method {
        if !mitm || i == .noInputNoOutput || r == .noInputNoOutput { return .justWorks }
        let displayish: Set<IOCapability> = [.displayOnly, .displayYesNo]
        if displayish.contains(i) && displayish.contains(r) {
            return (sc && i == .displayYesNo && r == .displayYesNo) ? .numericComparison : .justWorks
        }
        if sc && [.displayYesNo, .keyboardDisplay].contains(i) && [.displayYesNo, .keyboardDisplay].contains(r) {
            return .numericComparison
        }
        if i == .keyboardOnly { return .passkey(responderDisplays: r != .keyboardOnly) }
        if r == .keyboardOnly { return .passkey(responderDisplays: false) }
        if i == .displayOnly || i == .displayYesNo { return .passkey(responderDisplays: false) }
        // Initiator KeyboardDisplay (legacy): responder displays unless it is KeyboardDisplay too.
        return .passkey(responderDisplays: r != .keyboardDisplay)
    }

    mutating func fail(_ r: SMPReason) -> [[UInt8]] {
        failedWith = r
        return [SMPPDU.pairingFailed(r).encode()]
    }

    func f4(_ u: [UInt8], _ v: [UInt8], _ x: [UInt8], _ z: UInt8) -> [UInt8] {
        (try? SMPToolbox.f4(u: u, v: v, x: x, z: z)) ?? []
    }

    func rBit() -> UInt8 { 0x80 | UInt8((passkey >> UInt32(round)) & 1) }

    /// Replies to one PDU from the initiator.
    mutating func receive(_ bytes: [UInt8]) -> [[UInt8]] {
        guard failedWith == nil, let pdu = try? SMPPDU.decode(bytes) else { return [] }
        let me = SMPToolbox.publicKeyCoordinates(key)
        switch pdu {
        case .pairingRequest(let f):
            preq = bytes
            request = f
            sc = f.authReq.contains(.secureConnections) && auth.contains(.secureConnections)
            method = Self.method(i: f.ioCapability, r: io, sc: sc,
                                 mitm: f.authReq.contains(.mitm) || auth.contains(.mitm))
            let response = SMPPDU.pairingResponse(PairingFeatures(
                ioCapability: io, authReq: auth, maxEncryptionKeySize: maxKeySize,
                initiatorKeyDistribution: [], responderKeyDistribution: keyDistribution.intersection(f.responderKeyDistribution)))
            pres = response.encode()
            return [pres]
        case .pairingPublicKey(let x, let y):
            pkaX = x.reversed()
            guard let dh = SMPToolbox.dhKey(privateKey: key, peerX: pkaX, peerY: y.reversed()) else { return fail(.dhkeyCheckFailed) }
            dhKey = dh
            var outX = me.x, outY = me.y
            if corruptPublicKey { outY[31] ^= 1 }
            if reflectPublicKey { outX = pkaX; outY = y.reversed() }
            var out = [SMPPDU.pairingPublicKey(x: outX.reversed(), y: outY.reversed()).encode()]
            if method == .justWorks || method == .numericComparison {
                nb = random.bytes(16)
                out.append(SMPPDU.pairingConfirm(f4(me.x, pkaX, nb, 0).reversed()).encode())
            }
            return out
        case .pairingConfirm(let c):
            peerConfirm = c.reversed()
            if sc {  // Passkey round: Cbi = f4(PKbx, PKax, Nbi, rbi)
                nb = random.bytes(16)
                return [SMPPDU.pairingConfirm(f4(me.x, pkaX, nb, rBit()).reversed()).encode()]
            }
            srand = random.bytes(16)
            return [SMPPDU.pairingConfirm(legacyC1(srand).reversed()).encode()]
        case .pairingRandom(let r):
            let n = Array(r.reversed())
            if sc {
                na = n
                if case .passkey = method {
                    guard f4(pkaX, me.x, na, rBit()) == peerConfirm else { return fail(.confirmValueFailed) }
                    round += 1
                }
                return [SMPPDU.pairingRandom(nb.reversed()).encode()]
            }
            guard legacyC1(n) == peerConfirm else { return fail(.confirmValueFailed) }
            let stk = (try? SMPToolbox.s1(k: tk, r1: srand, r2: n)) ?? []
            expectedKey = [UInt8](repeating: 0, count: 16 - Int(min(maxKeySize, 16))) + stk.dropFirst(16 - Int(min(maxKeySize, 16)))
            return [SMPPDU.pairingRandom(srand.reversed()).encode()]
        case .pairingDHKeyCheck(let ea):
            guard let req = request,
                  let keys = try? SMPToolbox.f5(w: dhKey, n1: na, n2: nb, a1: Self.addr7(initiator), a2: Self.addr7(address))
            else { return fail(.unspecifiedReason) }
            if method == .numericComparison && !acceptNumericComparison { return fail(.numericComparisonFailed) }
            let r: [UInt8] = { if case .passkey = method { return tk }; return [UInt8](repeating: 0, count: 16) }()
            let ioA: [UInt8] = [req.authReq.rawValue, req.oobDataFlag, req.ioCapability.rawValue]
            let expected = try? SMPToolbox.f6(w: keys.macKey, n1: na, n2: nb, r: r, ioCap: ioA,
                                              a1: Self.addr7(initiator), a2: Self.addr7(address))
            guard expected == Array(ea.reversed()) else { return fail(.dhkeyCheckFailed) }
            let ioB: [UInt8] = [auth.rawValue, 0, io.rawValue]
            let eb = (try? SMPToolbox.f6(w: keys.macKey, n1: nb, n2: na, r: r, ioCap: ioB,
                                         a1: Self.addr7(address), a2: Self.addr7(initiator))) ?? []
            expectedKey = keys.ltk
            return [SMPPDU.pairingDHKeyCheck(eb.reversed()).encode()]
        default:
            return []
        }
    }

    func legacyC1(_ r: [UInt8]) -> [UInt8] {
        (try? SMPToolbox.c1(k: tk, r: r, preq: preq.reversed(), pres: pres.reversed(),
                            iat: initiator.type.isRandom ? 1 : 0, ia: initiator.address.bytes.reversed(),
                            rat: address.type.isRandom ? 1 : 0, ra: address.address.bytes.reversed())) ?? []
    }

    /// The numeric comparison value the peripheral shows: g2(PKax, PKbx, Na, Nb) mod 10^6.
    var comparisonValue: UInt32 {
        ((try? SMPToolbox.g2(u: pkaX, v: SMPToolbox.publicKeyCoordinates(key).x, x: na, y: nb)) ?? 0) % 1_000_000
    }

    /// Phase 3: the peripheral's keys, in Vol 3 Part H 3.6.1 order.
    func distributeKeys() -> [[UInt8]] {
        let dist = keyDistribution.intersection(request?.responderKeyDistribution ?? [])
        var out: [[UInt8]] = []
        if dist.contains(.encKey) && !sc {
            out.append(SMPPDU.encryptionInformation(ltk: legacyLTK).encode())
            out.append(SMPPDU.centralIdentification(ediv: ediv, rand: rand).encode())
        }
        if dist.contains(.idKey) {
            out.append(SMPPDU.identityInformation(irk: irk.reversed()).encode())
            out.append(SMPPDU.identityAddressInformation(identity).encode())
        }
        return out
    }
}
