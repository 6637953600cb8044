import Testing
@testable import IoMTATT

@Suite struct L2CAPTests {
    @Test func basicFrameHeaderIsLengthThenChannelLittleEndian() {
        // Core v5.4 Vol 3 Part A 3.1: Length (payload only) then CID, both little-endian.
        #expect(l2capBasicFrame(channel: L2CAPChannel.att, payload: [0x02, 0xF7, 0x00])
                == [0x03, 0x00, 0x04, 0x00, 0x02, 0xF7, 0x00])
        #expect(l2capBasicFrame(channel: L2CAPChannel.smp, payload: []) == [0x00, 0x00, 0x06, 0x00])
        #expect(L2CAPChannel.leSignalling == 0x0005)
    }

    static let commands: [LESignallingCommand] = [
        .commandReject(identifier: 1, reason: 0x0000, data: []),
        .commandReject(identifier: 2, reason: 0x0002, data: [0x40, 0x00, 0x41, 0x00]),
        .disconnectionRequest(identifier: 3, destinationCID: 0x0040, sourceCID: 0x0041),
        .disconnectionResponse(identifier: 3, destinationCID: 0x0040, sourceCID: 0x0041),
        .connectionParameterUpdateRequest(identifier: 4, intervalMin: 6, intervalMax: 12, latency: 0, timeout: 100),
        .connectionParameterUpdateResponse(identifier: 4, result: 1),
        .leCreditBasedConnectionRequest(identifier: 5, spsm: 0x0080, sourceCID: 0x0040, mtu: 512, mps: 247, initialCredits: 10),
        .leCreditBasedConnectionResponse(identifier: 5, destinationCID: 0, mtu: 0, mps: 0, initialCredits: 0, result: 2),
        .flowControlCredit(identifier: 6, cid: 0x0040, credits: 3),
        .unknown(code: 0x17, identifier: 7, data: [1, 2, 3]),
    ]

    @Test(arguments: commands)
    func signallingCommandRoundTrips(_ c: LESignallingCommand) throws {
        let bytes = c.encode()
        #expect(Int(UInt16(bytes[2]) | UInt16(bytes[3]) << 8) == bytes.count - 4)
        #expect(try LESignallingCommand.decode(bytes) == c)
    }

    @Test func connectionParameterUpdateRequestBytesFollowTheSpecLayout() throws {
        // Vol 3 Part A 4.20: code 0x12, id, length 8, min, max, latency, timeout.
        let bytes: [UInt8] = [0x12, 0x09, 0x08, 0x00, 0x18, 0x00, 0x28, 0x00, 0x00, 0x00, 0x2A, 0x00]
        #expect(try LESignallingCommand.decode(bytes)
                == .connectionParameterUpdateRequest(identifier: 9, intervalMin: 24, intervalMax: 40, latency: 0, timeout: 42))
    }

    @Test func truncatedSignallingNamesTheField() {
        #expect(throws: L2CAPDecodeError.self) { try LESignallingCommand.decode([0x12, 0x01, 0x08]) }
        do {
            _ = try LESignallingCommand.decode([0x12, 0x01])
            Issue.record("decoded a 2-octet command")
        } catch {
            #expect(error.field == "length")
        }
        do {
            _ = try LESignallingCommand.decode([0x12, 0x01, 0x04, 0x00, 1, 2, 3, 4])
            Issue.record("decoded a 4-octet parameter update")
        } catch {
            #expect(error.field == "connection parameter update request data")
        }
        do {
            _ = try LESignallingCommand.decode([0x13, 0x01, 0x02, 0x00, 0x00])
            Issue.record("decoded with length beyond the data")
        } catch {
            #expect(error.field == "length")
        }
    }

    @Test func validParameterUpdateIsAcceptedThenTheConnectionUpdated() {
        var r = LESignallingResponder()
        let req = LESignallingCommand.connectionParameterUpdateRequest(identifier: 7, intervalMin: 24, intervalMax: 40,
                                                                       latency: 4, timeout: 600).encode()
        let actions = r.receive(req)
        #expect(actions == [
            .send([0x13, 0x07, 0x02, 0x00, 0x00, 0x00]),
            .updateConnection(intervalMin: 24, intervalMax: 40, latency: 4, supervisionTimeout: 600),
        ])
    }

    @Test(arguments: [
        (UInt16(5), UInt16(40), UInt16(0), UInt16(600)),     // min below 6
        (UInt16(40), UInt16(24), UInt16(0), UInt16(600)),    // min > max
        (UInt16(6), UInt16(3201), UInt16(0), UInt16(3200)),  // max above 3200
        (UInt16(24), UInt16(40), UInt16(500), UInt16(3200)), // latency above 499
        (UInt16(24), UInt16(40), UInt16(0), UInt16(9)),      // timeout below 10
        (UInt16(24), UInt16(40), UInt16(0), UInt16(3201)),   // timeout above 3200
        (UInt16(24), UInt16(40), UInt16(4), UInt16(50)),     // 500 ms ≤ (1+4)*50 ms*2
    ])
    func invalidParameterUpdateIsRejected(_ p: (UInt16, UInt16, UInt16, UInt16)) {
        var r = LESignallingResponder()
        let req = LESignallingCommand.connectionParameterUpdateRequest(identifier: 3, intervalMin: p.0, intervalMax: p.1,
                                                                       latency: p.2, timeout: p.3).encode()
        #expect(r.receive(req) == [.send([0x13, 0x03, 0x02, 0x00, 0x01, 0x00])])
    }

    @Test func supervisionTimeoutBoundaryIsStrict() {
        // max 40 (50 ms), latency 4: (1+4)*50*2 = 500 ms = timeout 50 → rejected; 51 accepted.
        #expect(!LESignallingResponder.isValidConnectionParameters(intervalMin: 24, intervalMax: 40, latency: 4, timeout: 50))
        #expect(LESignallingResponder.isValidConnectionParameters(intervalMin: 24, intervalMax: 40, latency: 4, timeout: 51))
    }

    @Test func creditBasedConnectionIsRefusedWithSPSMNotSupported() throws {
        var r = LESignallingResponder()
        let actions = r.receive(LESignallingCommand.leCreditBasedConnectionRequest(
            identifier: 0x21, spsm: 0x0080, sourceCID: 0x0040, mtu: 100, mps: 100, initialCredits: 5).encode())
        guard case .send(let bytes)? = actions.first else { Issue.record("no response"); return }
        #expect(actions.count == 1)
        #expect(try LESignallingCommand.decode(bytes) == .leCreditBasedConnectionResponse(
            identifier: 0x21, destinationCID: 0, mtu: 0, mps: 0, initialCredits: 0, result: 0x0002))
    }

    @Test func unknownAndMalformedCommandsGetCommandNotUnderstoodWithTheSameIdentifier() {
        var r = LESignallingResponder()
        #expect(r.receive([0x0A, 0x33, 0x02, 0x00, 0x01, 0x00]) == [.send([0x01, 0x33, 0x02, 0x00, 0x00, 0x00])])
        // Parameter update with 3 data octets: complete header, wrong size → reject.
        #expect(r.receive([0x12, 0x34, 0x03, 0x00, 1, 2, 3]) == [.send([0x01, 0x34, 0x02, 0x00, 0x00, 0x00])])
    }

    @Test func disconnectionRequestForUnknownChannelIsRejectedWithInvalidCID() {
        var r = LESignallingResponder()
        let a = r.receive(LESignallingCommand.disconnectionRequest(identifier: 5, destinationCID: 0x0040, sourceCID: 0x0041).encode())
        #expect(a == [.send(LESignallingCommand.commandReject(identifier: 5, reason: 0x0002, data: [0x40, 0x00, 0x41, 0x00]).encode())])
    }

    @Test func headerlessInputIdentifierZeroAndResponsesAreIgnored() {
        var r = LESignallingResponder()
        #expect(r.receive([]) == [])
        #expect(r.receive([0x12, 0x01, 0x08]) == [])
        #expect(r.receive([0x0A, 0x00, 0x00, 0x00]) == [])
        #expect(r.receive(LESignallingCommand.commandReject(identifier: 4, reason: 0, data: []).encode()) == [])
        #expect(r.receive(LESignallingCommand.flowControlCredit(identifier: 4, cid: 0x40, credits: 1).encode()) == [])
        #expect(r.ignoredCount == 5)
    }

    @Test func randomBytesNeverTrap() {
        var r = LESignallingResponder()
        var seed: UInt64 = 0x1234
        for _ in 0..<2000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let n = Int(seed >> 60)
            var b: [UInt8] = []
            for i in 0..<n { b.append(UInt8(truncatingIfNeeded: seed >> UInt64(i * 3 % 56))) }
            for a in r.receive(b) {
                if case .send(let out) = a { #expect(out.count >= 4) }
            }
        }
    }
}
