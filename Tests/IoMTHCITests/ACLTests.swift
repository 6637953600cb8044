import Testing
@testable import IoMTHCI

let h1 = ConnectionHandle(rawValue: 0x0040)
let h2 = ConnectionHandle(rawValue: 0x0041)

@Suite struct ACLPacketTests {
    @Test func encodeDecodeRoundTrip() throws {
        let p = ACLPacket(handle: ConnectionHandle(rawValue: 0x0ABC), boundary: .continuing, broadcast: 1, data: [1, 2, 3])
        #expect(p.encoded == hex("bc5a 0300 010203"))
        #expect(try ACLPacket.decode(p.encoded) == p)
        #expect(PacketBoundary(rawValue: 0b10) == .firstAutomaticallyFlushable)
    }

    @Test func truncatedACLNamesTheField() {
        do { _ = try ACLPacket.decode(hex("4020 0500 0102")); Issue.record("no throw") } catch {
            #expect(error.underlying.field == "Data")
        }
        do { _ = try ACLPacket.decode(hex("4020 05")); Issue.record("no throw") } catch {
            #expect(error.underlying.field == "Data_Total_Length")
        }
    }
}

@Suite struct ACLOutboundTests {
    @Test func fragmentsToBufferLengthWithBoundaryFlags() {
        var o = ACLOutbound(bufferLength: 27, totalPackets: 10)
        let pdu = Array(0..<UInt8(60))
        let out = o.send(pdu, on: h1)
        #expect(out.map(\.data.count) == [27, 27, 6])
        #expect(out.map(\.boundary) == [.firstNonFlushable, .continuing, .continuing])
        #expect(out.flatMap(\.data) == pdu)
        #expect(o.credits == 7 && o.inFlightCount == 3 && o.queuedCount == 0)
    }

    @Test func creditsLimitAndCompletionsRelease() {
        var o = ACLOutbound(bufferLength: 10, totalPackets: 2)
        let out = o.send(Array(repeating: 1, count: 35), on: h1)  // 4 fragments
        #expect(out.count == 2 && o.queuedCount == 2 && o.credits == 0)
        let next = o.completed([CompletedPackets(handle: h1, count: 1)])
        #expect(next.count == 1 && next[0].boundary == .continuing && o.queuedCount == 1)
        let last = o.completed([CompletedPackets(handle: h1, count: 2)])
        #expect(last.count == 1 && last[0].data.count == 5 && o.queuedCount == 0)
        #expect(o.completed([CompletedPackets(handle: h1, count: 1)]).isEmpty)
        #expect(o.credits == 2)
        // More completions than in flight never inflate the credits.
        #expect(o.completed([CompletedPackets(handle: h1, count: 5)]).isEmpty)
        #expect(o.credits == 2 && o.unexpectedCompletions == 5)
    }

    @Test func queuedFragmentsAreServedRoundRobinAcrossHandles() {
        var o = ACLOutbound(bufferLength: 10, totalPackets: 1)
        let a = o.send(Array(repeating: 0xA, count: 30), on: h1)  // 3 fragments, 1 goes
        #expect(a.count == 1)
        #expect(o.send(Array(repeating: 0xB, count: 20), on: h2).isEmpty)  // 2 queued
        var order: [ConnectionHandle] = []
        var last = a[0].handle
        for _ in 0..<4 {
            let n = o.completed([CompletedPackets(handle: last, count: 1)])
            #expect(n.count == 1)
            last = n[0].handle
            order.append(last)
        }
        #expect(order == [h1, h2, h1, h2])
        #expect(o.queuedCount == 0)
    }

    @Test func disconnectDropsQueueAndReturnsInFlightCredits() {
        var o = ACLOutbound(bufferLength: 10, totalPackets: 2)
        _ = o.send(Array(repeating: 1, count: 40), on: h1)  // 2 in flight, 2 queued
        #expect(o.send(Array(repeating: 2, count: 5), on: h2).isEmpty)
        let after = o.disconnected(h1)
        #expect(after.count == 1 && after[0].handle == h2)
        #expect(o.queuedCount == 0 && o.inFlight(on: h1) == 0 && o.credits == 1)
        // A late completion for the dead handle is ignored.
        #expect(o.completed([CompletedPackets(handle: h1, count: 2)]).isEmpty)
        #expect(o.credits == 1)
    }
}

@Suite struct L2CAPReassemblerTests {
    static let frame = L2CAPBasicFrame(handle: h1, channelID: 0x0004, payload: Array(0..<UInt8(50)))

    static func fragments(_ f: L2CAPBasicFrame, size: Int) -> [ACLPacket] {
        let pdu = f.pdu
        return stride(from: 0, to: pdu.count, by: size).map { i in
            ACLPacket(handle: f.handle, boundary: i == 0 ? .firstAutomaticallyFlushable : .continuing,
                      data: Array(pdu[i..<min(pdu.count, i + size)]))
        }
    }

    @Test func reassemblesAnySplitIncludingASplitHeader() throws {
        for size in [1, 2, 3, 5, 27, 54, 100] {
            var r = L2CAPReassembler()
            var got: [L2CAPBasicFrame] = []
            for p in Self.fragments(Self.frame, size: size) { if let f = try r.receive(p) { got.append(f) } }
            #expect(got == [Self.frame], "size \(size)")
            #expect(!r.hasPartialFrame(on: h1))
        }
    }

    @Test func aclLargerThanAdvertisedBufferIsFine() throws {
        var r = L2CAPReassembler()
        // Bumble quirk 8: a 36-byte ACL packet although the buffer is 27.
        let f = L2CAPBasicFrame(handle: h1, channelID: 4, payload: Array(repeating: 9, count: 32))
        #expect(try r.receive(ACLPacket(handle: h1, boundary: .firstAutomaticallyFlushable, data: f.pdu)) == f)
    }

    @Test func interleavedHandlesReassembleIndependently() throws {
        var r = L2CAPReassembler()
        let f2 = L2CAPBasicFrame(handle: h2, channelID: 0x0006, payload: [7, 7, 7, 7, 7, 7, 7])
        let a = Self.fragments(Self.frame, size: 20), b = Self.fragments(f2, size: 4)
        var got: [L2CAPBasicFrame] = []
        for i in 0..<max(a.count, b.count) {
            if i < a.count, let f = try r.receive(a[i]) { got.append(f) }
            if i < b.count, let f = try r.receive(b[i]) { got.append(f) }
        }
        #expect(Set(got) == [Self.frame, f2] && got.count == 2)
    }

    @Test func continuationWithoutStartThrows() {
        var r = L2CAPReassembler()
        #expect(throws: ReassemblyError.continuationWithoutStart(h1)) {
            try r.receive(ACLPacket(handle: h1, boundary: .continuing, data: [1, 2]))
        }
    }

    @Test func frameLongerThanDeclaredThrowsAndResets() throws {
        var r = L2CAPReassembler()
        #expect(try r.receive(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: hex("0300 0400 01"))) == nil)
        #expect(throws: ReassemblyError.frameLongerThanDeclared(h1, declared: 3, received: 5)) {
            try r.receive(ACLPacket(handle: h1, boundary: .continuing, data: [2, 3, 4, 5]))
        }
        #expect(!r.hasPartialFrame(on: h1))
        // The handle works again afterwards.
        let ok = L2CAPBasicFrame(handle: h1, channelID: 5, payload: [1])
        #expect(try r.receive(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: ok.pdu)) == ok)
    }

    @Test func declaredLengthOverTheBoundThrows() {
        var r = L2CAPReassembler(maxPayloadLength: 100)
        #expect(throws: ReassemblyError.declaredLengthTooLarge(h1, declared: 0x0200, maximum: 100)) {
            try r.receive(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: hex("0002 0400")))
        }
        #expect(!r.hasPartialFrame(on: h1))
    }

    @Test func newStartDiscardsIncompleteFrameAndDisconnectClears() throws {
        var r = L2CAPReassembler()
        _ = try r.receive(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: hex("0a00 0400 01")))
        let f = L2CAPBasicFrame(handle: h1, channelID: 4, payload: [9])
        #expect(try r.receive(ACLPacket(handle: h1, boundary: .firstNonFlushable, data: f.pdu)) == f)
        #expect(r.discardedIncomplete == 1)
        _ = try r.receive(ACLPacket(handle: h2, boundary: .firstNonFlushable, data: hex("0a00 0400 01")))
        r.disconnected(h2)
        #expect(!r.hasPartialFrame(on: h2))
    }
}
