import Testing
@testable import IoMTHCI

@Suite struct CommandFlowTests {
    @Test func startsWithOneCreditAndQueues() {
        var c = CommandFlow(timeoutMs: 1000)
        #expect(c.submit(.reset, token: 1, now: 0) == [.send(.reset)])
        #expect(c.submit(.readBDADDR, token: 2, now: 0).isEmpty)
        #expect(c.queuedCount == 1 && c.outstandingCount == 1)
        let a = c.receive(.commandComplete(numHCICommandPackets: 1, opcode: .reset, returnParameters: [0]), now: 5)
        #expect(a == [.complete(token: 1, .complete(returnParameters: [0])), .send(.readBDADDR)])
        #expect(c.nextDeadline == 1005)
    }

    @Test func numCommandPacketsSetsCredits() {
        var c = CommandFlow()
        _ = c.submit(.reset, token: 1, now: 0)
        for t in 2...5 { _ = c.submit(.readBufferSize, token: UInt64(t), now: 0) }
        let a = c.receive(.commandComplete(numHCICommandPackets: 3, opcode: .reset, returnParameters: [0]), now: 1)
        #expect(a.filter { if case .send = $0 { return true }; return false }.count == 3)
        #expect(c.credits == 0 && c.queuedCount == 1)
    }

    @Test func commandStatusCompletesWithStatus() {
        var c = CommandFlow()
        let peer = LEAddress(BDAddress("C0:11:22:33:44:55")!, type: .randomDevice)
        _ = c.submit(.leCreateConnection(peer: peer, ownAddressType: .randomDevice), token: 9, now: 0)
        let a = c.receive(.commandStatus(status: .commandDisallowed, numHCICommandPackets: 1, opcode: .leCreateConnection), now: 1)
        #expect(a == [.complete(token: 9, .status(.commandDisallowed))])
        #expect(CommandOutcome.status(.commandDisallowed).commandStatus == .commandDisallowed)
        #expect(CommandOutcome.complete(returnParameters: [0x12, 0]).commandStatus == .invalidHCICommandParameters)
    }

    @Test func opcodeZeroOnlyUpdatesCredits() {
        var c = CommandFlow()
        _ = c.submit(.reset, token: 1, now: 0)
        _ = c.submit(.readBDADDR, token: 2, now: 0)
        let a = c.receive(.commandComplete(numHCICommandPackets: 1, opcode: .noOperation, returnParameters: []), now: 1)
        #expect(a == [.send(.readBDADDR)])
        #expect(c.outstandingCount == 2 && c.unexpectedCompletions == 0)
    }

    @Test func completionsMatchOldestOutstandingWithThatOpcode() {
        var c = CommandFlow()
        _ = c.receive(.commandComplete(numHCICommandPackets: 5, opcode: .noOperation, returnParameters: []), now: 0)
        _ = c.submit(.readBDADDR, token: 1, now: 0)
        _ = c.submit(.reset, token: 2, now: 0)
        _ = c.submit(.readBDADDR, token: 3, now: 0)
        #expect(c.receive(.commandComplete(numHCICommandPackets: 5, opcode: .readBDADDR, returnParameters: [0]), now: 1)
                == [.complete(token: 1, .complete(returnParameters: [0]))])
        #expect(c.receive(.commandComplete(numHCICommandPackets: 5, opcode: .readBDADDR, returnParameters: [1]), now: 1)
                == [.complete(token: 3, .complete(returnParameters: [1]))])
    }

    @Test func unexpectedCompletionIsIgnoredAndCounted() {
        var c = CommandFlow()
        _ = c.submit(.reset, token: 1, now: 0)
        let a = c.receive(.commandComplete(numHCICommandPackets: 1, opcode: .leRand, returnParameters: [0]), now: 1)
        #expect(a.isEmpty && c.unexpectedCompletions == 1 && c.outstandingCount == 1)
        #expect(c.receive(.hardwareError(1), now: 1).isEmpty)
    }

    @Test func timeoutFailsTheCommandAndFreesItsCredit() {
        var c = CommandFlow(timeoutMs: 2000)
        _ = c.submit(.leEncrypt, token: 1, now: 100)  // Bumble never answers LE Encrypt (quirk 7)
        _ = c.submit(.readBDADDR, token: 2, now: 150)
        #expect(c.nextDeadline == 2100)
        #expect(c.tick(now: 2099).isEmpty)
        let a = c.tick(now: 2100)
        #expect(a == [.complete(token: 1, .timedOut), .send(.readBDADDR)])
        #expect(c.nextDeadline == 4100)
    }

    @Test func resetAbortsEverything() {
        var c = CommandFlow()
        _ = c.submit(.readBDADDR, token: 1, now: 0)
        _ = c.submit(.readBufferSize, token: 2, now: 0)
        #expect(c.reset() == [.complete(token: 1, .aborted), .complete(token: 2, .aborted)])
        #expect(c.nextDeadline == nil && c.credits == 1)
        #expect(c.submit(.reset, token: 3, now: 10) == [.send(.reset)])
    }
}

extension HCICommand {
    static var leEncrypt: HCICommand { HCICommand(opcode: .leEncrypt, parameters: Array(repeating: 0, count: 32)) }
    static var leRand: HCICommand { HCICommand(opcode: .leRand) }
}

@Suite struct BTSnoopTests {
    @Test func fileHeaderIsBtsnoopVersion1H4() {
        #expect(BTSnoop.fileHeader == hex("6274736e6f6f7000 00000001 000003ea"))
    }

    @Test func recordHeaderFieldsAreBigEndian() {
        let r = BTSnoop.record(.command(.reset), sent: true, timestampMicrosSince1970: 0)
        #expect(r == hex("00000004 00000004 00000002 00000000 00dcddb30f2f8000 01030c00"))
        let e = BTSnoop.record(.event(code: 0x0E, parameters: [1, 3, 0x0C, 0]), sent: false, timestampMicrosSince1970: 1)
        #expect(Array(e[8..<12]) == [0, 0, 0, 3])
        #expect(Array(e[16..<24]) == hex("00dcddb30f2f8001"))
        let acl = BTSnoop.record(.acl(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: [1])), sent: false, timestampMicrosSince1970: 0)
        #expect(Array(acl[8..<12]) == [0, 0, 0, 1] && acl.count == 24 + 6)
    }
}
