import IoMTHCI
import IoMTSMP
import Testing

let central = LEAddress(BDAddress("C1:02:03:04:05:06")!, type: .randomDevice)
let peripheral = LEAddress(BDAddress("00:A1:B2:C3:D4:E5")!, type: .publicDevice)

/// Runs a pairing between a `PairingInitiator` and a `ResponderSim`, as the host would: sends go to
/// the simulator, its replies come back, user prompts are answered, encryption is "started".
struct Harness {
    var initiator: PairingInitiator
    var sim: ResponderSim
    var now: UInt64 = 1_000
    var log: [SMPAction] = []
    var encryptedWith: [UInt8]?
    /// What the initiator's user types when asked (nil: the simulator's passkey).
    var typedPasskey: UInt32?
    var confirmNumbers = true
    var displayed: UInt32?
    var compared: (ours: UInt32, theirs: UInt32)?

    init(io: IOCapability = .noInputNoOutput, peerIO: IOCapability = .noInputNoOutput,
         peerAuth: AuthRequirements = [.bonding, .secureConnections], requireMITM: Bool = false,
         allowLegacy: Bool = true, bonding: Bool = true, seed: UInt64 = 7) {
        let rng = SeededRandom(seed: seed)
        initiator = PairingInitiator(local: central, peer: peripheral, ioCapability: io, bonding: bonding,
                                     requireMITM: requireMITM, allowLegacy: allowLegacy,
                                     random: { rng.bytes($0) },
                                     privateKey: SMPToolbox.privateKey(scalar: AppendixD.privateA))
        sim = ResponderSim(io: peerIO, auth: peerAuth, initiator: central, address: peripheral)
    }

    /// Drives until the initiator completes, fails, or no more input is pending. Returns the last action.
    mutating func run() -> SMPAction? {
        var queue = initiator.start(now: now)
        var steps = 0
        while !queue.isEmpty && steps < 500 {
            steps += 1
            let action = queue.removeFirst()
            log.append(action)
            now += 5
            switch action {
            case .send(let bytes):
                for reply in sim.receive(bytes) { queue += initiator.receive(reply, now: now) }
            case .startEncryption(let ltk, _, _):
                encryptedWith = ltk
                guard Array(ltk.reversed()) == sim.expectedKey else {
                    queue += initiator.encryptionChanged(success: false, keySize: nil, now: now)
                    continue
                }
                queue += initiator.encryptionChanged(success: true, keySize: sim.maxKeySize, now: now)
                for key in sim.distributeKeys() { queue += initiator.receive(key, now: now) }
            case .requestPasskey:
                queue += initiator.passkeyEntered(typedPasskey ?? sim.passkey, now: now)
            case .displayPasskey(let p):
                displayed = p
                sim.passkey = p  // the peripheral's user types what we show
            case .confirmNumericComparison(let v):
                compared = (v, sim.comparisonValue)
                queue += initiator.numericComparisonConfirmed(confirmNumbers, now: now)
            case .completed, .failed:
                return action
            }
        }
        return nil
    }
}

func result(_ a: SMPAction?) -> PairingResult? {
    if case .completed(let r)? = a { return r }
    return nil
}

func failure(_ a: SMPAction?) -> PairingFailure? {
    if case .failed(let f)? = a { return f }
    return nil
}

@Suite struct PairingInitiatorTests {
    @Test func secureConnectionsJustWorksBondsWithIdentity() throws {
        var h = Harness()
        let r = try #require(result(h.run()))
        #expect(r.secureConnections)
        #expect(!r.authenticated)
        #expect(r.bonded)
        #expect(r.keySize == 16)
        #expect(r.ediv == 0 && r.rand == 0)
        #expect(r.ltk == h.encryptedWith)
        #expect(Array(r.ltk.reversed()) == h.sim.expectedKey)
        #expect(r.peerIRK == h.sim.irk)
        #expect(r.peerIdentity == h.sim.identity)
        // SC never distributes an LTK; the request asked the responder for EncKey|IdKey only.
        #expect(!h.log.contains { if case .send(let b) = $0 { b.first == 0x06 } else { false } })
    }

    @Test func firstPDUIsPairingRequestWithSCBondingAndOurDistribution() {
        var h = Harness(io: .keyboardDisplay)
        let actions = h.initiator.start(now: 0)
        #expect(actions == [.send([0x01, 0x04, 0x00, 0x0D, 0x10, 0x00, 0x03])])
        #expect(h.initiator.nextDeadline == 30_000)
    }

    @Test func numericComparisonShowsSameNumberOnBothSides() throws {
        var h = Harness(io: .displayYesNo, peerIO: .displayYesNo, peerAuth: [.bonding, .mitm, .secureConnections])
        let r = try #require(result(h.run()))
        let c = try #require(h.compared)
        #expect(c.ours == c.theirs)
        #expect(c.ours < 1_000_000)
        #expect(r.authenticated && r.secureConnections)
    }

    @Test func numericComparisonRejectedByOurUserFails() throws {
        var h = Harness(io: .keyboardDisplay, peerIO: .displayYesNo, peerAuth: [.bonding, .mitm, .secureConnections])
        h.confirmNumbers = false
        let f = try #require(failure(h.run()))
        #expect(f.reason == .numericComparisonFailed && !f.remote)
        #expect(h.log.contains(.send([0x05, 0x0C])))
    }

    @Test func numericComparisonRejectedByPeerIsRemoteFailure() throws {
        var h = Harness(io: .displayYesNo, peerIO: .displayYesNo, peerAuth: [.bonding, .mitm, .secureConnections])
        h.sim.acceptNumericComparison = false
        let f = try #require(failure(h.run()))
        #expect(f.reason == .numericComparisonFailed && f.remote)
        #expect(f.description == "the device rejected pairing: numeric comparison failed")
    }

    @Test func scPasskeyWeTypeWhatPeripheralShows() throws {
        var h = Harness(io: .keyboardOnly, peerIO: .displayOnly, peerAuth: [.bonding, .mitm, .secureConnections])
        h.sim.passkey = 987_654
        let r = try #require(result(h.run()))
        #expect(r.authenticated && r.secureConnections)
        // 20 rounds: 20 confirms + 20 randoms from us, plus request, public key and DHKey check.
        let sent = h.log.compactMap { if case .send(let b) = $0 { b.first } else { nil } }
        #expect(sent.filter { $0 == 0x03 }.count == 20)
        #expect(sent.filter { $0 == 0x04 }.count == 20)
    }

    @Test func scPasskeyWeDisplayPeripheralTypes() throws {
        var h = Harness(io: .displayOnly, peerIO: .keyboardOnly, peerAuth: [.bonding, .mitm, .secureConnections])
        let r = try #require(result(h.run()))
        #expect(h.displayed != nil && h.displayed! < 1_000_000)
        #expect(r.authenticated)
    }

    @Test func scWrongPasskeyFailsWithConfirmValueFailed() throws {
        var h = Harness(io: .keyboardOnly, peerIO: .displayOnly, peerAuth: [.bonding, .mitm, .secureConnections])
        h.sim.passkey = 111_111
        h.typedPasskey = 111_112
        let f = try #require(failure(h.run()))
        #expect(f.reason == .confirmValueFailed)
        #expect(f.description.contains("wrong passkey"))
        #expect(h.encryptedWith == nil)
    }

    @Test func legacyJustWorksUsesDistributedLTKEDIVAndRand() throws {
        var h = Harness(peerAuth: [.bonding])
        let r = try #require(result(h.run()))
        #expect(!r.secureConnections && !r.authenticated && r.bonded)
        #expect(r.ltk == h.sim.legacyLTK)
        #expect(r.ediv == h.sim.ediv && r.rand == h.sim.rand)
        #expect(r.peerIRK == h.sim.irk && r.peerIdentity == h.sim.identity)
        // Encryption during pairing used the STK, not the distributed LTK.
        #expect(h.encryptedWith.map { Array($0.reversed()) } == h.sim.expectedKey)
        #expect(h.encryptedWith != r.ltk)
    }

    @Test func legacyPasskeyUsesPasskeyAsTK() throws {
        var h = Harness(io: .keyboardDisplay, peerIO: .displayOnly, peerAuth: [.bonding, .mitm])
        h.sim.passkey = 4_321
        let r = try #require(result(h.run()))
        #expect(!r.secureConnections && r.authenticated)
        #expect(h.log.contains(.requestPasskey))
    }

    @Test func legacyWrongPasskeyFails() throws {
        var h = Harness(io: .keyboardDisplay, peerIO: .displayOnly, peerAuth: [.bonding, .mitm])
        h.typedPasskey = 1
        let f = try #require(failure(h.run()))
        #expect(f.reason == .confirmValueFailed && f.remote)
    }

    @Test func legacyRejectedWhenNotAllowed() throws {
        var h = Harness(peerAuth: [.bonding], allowLegacy: false)
        let f = try #require(failure(h.run()))
        #expect(f.reason == .authenticationRequirements && !f.remote)
        #expect(h.log.contains(.send([0x05, 0x03])))
    }

    @Test func requireMITMRejectsJustWorks() throws {
        var h = Harness(io: .keyboardDisplay, peerIO: .noInputNoOutput, requireMITM: true)
        let f = try #require(failure(h.run()))
        #expect(f.reason == .authenticationRequirements)
    }

    @Test func shortKeySizeIsRefusedAndNegotiatedSizeMasksLTK() throws {
        var h = Harness()
        h.sim.maxKeySize = 6
        #expect(try #require(failure(h.run())).reason == .encryptionKeySize)
        var h2 = Harness(peerAuth: [.bonding])
        h2.sim.maxKeySize = 7
        let r = try #require(result(h2.run()))
        #expect(r.keySize == 7)
        let stk = try #require(h2.encryptedWith)
        #expect(stk[7...].allSatisfy { $0 == 0 })  // LSB first: the 9 most significant octets are zero
    }

    @Test func noBondingMeansNoKeysAndNotBonded() throws {
        var h = Harness(peerAuth: [.secureConnections], bonding: false)
        let r = try #require(result(h.run()))
        #expect(!r.bonded && r.peerIRK == nil && r.peerIdentity == nil)
    }

    @Test func peerPublicKeyOffCurveFails() throws {
        var h = Harness()
        h.sim.corruptPublicKey = true
        let f = try #require(failure(h.run()))
        #expect(f.reason == .invalidParameters && !f.remote)
        #expect(h.log.contains(.send([0x05, 0x0A])))
    }

    @Test func reflectedPublicKeyFails() throws {
        var h = Harness()
        h.sim.reflectPublicKey = true
        #expect(try #require(failure(h.run())).reason == .dhkeyCheckFailed)
    }

    @Test func timeoutAfter30sAndSilenceAfterwards() throws {
        var h = Harness()
        _ = h.initiator.start(now: 0)
        #expect(h.initiator.tick(now: 29_999).isEmpty)
        let actions = h.initiator.tick(now: 30_000)
        let f = try #require(failure(actions.last))
        #expect(f.timeout && f.description == "pairing timed out after 30 s")
        #expect(!actions.contains { if case .send = $0 { true } else { false } })
        #expect(h.initiator.nextDeadline == nil)
        #expect(h.initiator.receive([0x02, 0x03, 0x00, 0x09, 0x10, 0x00, 0x03], now: 30_001).isEmpty)
    }

    @Test func timerRestartsOnEverySend() {
        var h = Harness()
        _ = h.initiator.start(now: 0)
        // Pairing Response at 20 s: we send our public key, so the deadline moves to 50 s.
        _ = h.initiator.receive([0x02, 0x03, 0x00, 0x09, 0x10, 0x00, 0x03], now: 20_000)
        #expect(h.initiator.nextDeadline == 50_000)
    }

    @Test(arguments: [
        ([0x02, 0x03, 0x00], SMPReason.invalidParameters),
        ([], SMPReason.invalidParameters),
        ([0x42, 0x01], SMPReason.commandNotSupported),
        ([0x04] + [UInt8](repeating: 0, count: 16), SMPReason.unspecifiedReason),  // random before response
        ([0x01, 0x03, 0x00, 0x09, 0x10, 0x00, 0x03], SMPReason.unspecifiedReason),  // a request to the initiator
    ] as [([UInt8], SMPReason)])
    func malformedOrUnexpectedPDUFailsPairing(_ bytes: [UInt8], _ reason: SMPReason) throws {
        var h = Harness()
        _ = h.initiator.start(now: 0)
        let actions = h.initiator.receive(bytes, now: 10)
        #expect(actions.first == .send([0x05, reason.rawValue]))
        #expect(try #require(failure(actions.last)).reason == reason)
        #expect(h.initiator.isFinished)
    }

    @Test func randomBytesNeverTrap() {
        let rng = SeededRandom(seed: 3)
        for _ in 0..<300 {
            var h = Harness()
            _ = h.initiator.start(now: 0)
            let len = Int(rng.bytes(1)[0] % 70)
            var bytes = rng.bytes(len)
            if !bytes.isEmpty { bytes[0] %= 0x10 }
            _ = h.initiator.receive(bytes, now: 1)
            _ = h.initiator.receive(rng.bytes(len), now: 2)
        }
        #expect(Bool(true))
    }

    @Test func cancelSendsPairingFailedOnceThenSilence() throws {
        var h = Harness(io: .keyboardOnly, peerIO: .displayOnly, peerAuth: [.bonding, .mitm, .secureConnections])
        _ = h.initiator.start(now: 0)
        let afterResponse = h.initiator.receive([0x02, 0x00, 0x00, 0x0D, 0x10, 0x00, 0x03], now: 5)
        #expect(afterResponse.first == .requestPasskey)
        let actions = h.initiator.cancel(now: 6)
        #expect(actions.first == .send([0x05, 0x01]))
        #expect(try #require(failure(actions.last)).reason == .passkeyEntryFailed)
        #expect(h.initiator.cancel(now: 7).isEmpty)
        #expect(h.initiator.passkeyEntered(123_456, now: 8).isEmpty)
    }

    @Test func securityRequestDuringPairingIsIgnored() {
        var h = Harness()
        _ = h.initiator.start(now: 0)
        #expect(h.initiator.receive([0x0B, 0x09], now: 5).isEmpty)
        #expect(!h.initiator.isFinished)
    }
}
