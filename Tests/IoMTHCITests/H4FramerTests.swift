import IoMTCore
import Testing
@testable import IoMTHCI

@Suite struct H4FramerTests {
    static let packets: [HCIPacket] = [
        .event(code: 0x0E, parameters: [0x01, 0x03, 0x0C, 0x00]),
        .command(.reset),
        .acl(ACLPacket(handle: ConnectionHandle(rawValue: 0x0040), boundary: .firstAutomaticallyFlushable,
                       data: [0x03, 0x00, 0x04, 0x00, 0x1B, 0x2A, 0x00])),
        .event(code: 0x3E, parameters: Array(repeating: 0xAB, count: 255)),
        .event(code: 0x13, parameters: []),
        .sco([0x01, 0x00, 0x02, 0xAA, 0xBB]),
        .iso([0x01, 0x00, 0x03, 0x00, 1, 2, 3]),
        .acl(ACLPacket(handle: ConnectionHandle(rawValue: 0x0FFF), boundary: .continuing, broadcast: 0, data: [])),
    ]
    static var stream: [UInt8] { packets.flatMap(\.h4Bytes) }

    @Test func h4BytesCarryIndicatorAndSpecHeaders() {
        #expect(HCIPacket.command(.reset).h4Bytes == hex("01 03 0c 00"))
        #expect(HCIPacket.event(code: 0x0E, parameters: [1, 3, 0x0C, 0]).h4Bytes == hex("04 0e 04 01 03 0c 00"))
        let acl = ACLPacket(handle: ConnectionHandle(rawValue: 0x0040), boundary: .firstAutomaticallyFlushable, data: [9, 8])
        #expect(HCIPacket.acl(acl).h4Bytes == hex("02 40 20 02 00 09 08"))
        #expect(HCIPacket.sco([1, 2]).h4Bytes == [3, 1, 2])
        #expect(HCIPacket.iso([1, 2]).h4Bytes == [5, 1, 2])
    }

    @Test func byteAtATimeYieldsEveryPacketInOrder() throws {
        var f = H4Framer()
        var out: [HCIPacket] = []
        for b in Self.stream { out += try f.push([b]) }
        #expect(out == Self.packets)
    }

    @Test func randomSplitsYieldTheSamePackets() throws {
        var rng = SplitMix64(seed: 42)
        let s = Self.stream
        for _ in 0..<200 {
            var f = H4Framer()
            var out: [HCIPacket] = []
            var i = 0
            while i < s.count {
                let n = Int.random(in: 1...40, using: &rng)
                out += try f.push(s[i..<min(s.count, i + n)])
                i += n
            }
            #expect(out == Self.packets)
        }
    }

    @Test func wholeStreamAtOnce() throws {
        var f = H4Framer()
        #expect(try f.push(Self.stream) == Self.packets)
        #expect(try f.push([]) == [])
    }

    @Test func unknownIndicatorNamesTheByteAndPoisonsTheFramer() throws {
        var f = H4Framer()
        #expect(throws: H4Error.unknownPacketIndicator(0x7F)) { try f.push([0x7F, 0, 0]) }
        #expect(throws: H4Error.framerFailed) { try f.push(HCIPacket.command(.reset).h4Bytes) }
        #expect(H4Error.unknownPacketIndicator(0x7F).description.contains("0x7f"))
    }

    @Test func packetOverTheBoundThrowsBeforeBuffering() throws {
        var f = H4Framer(maxPacketLength: 100)
        // ACL header declaring 200 bytes: rejected as soon as the header is complete.
        #expect(throws: H4Error.packetTooLong(indicator: 2, length: 204, maximum: 100)) {
            try f.push(hex("02 40 20 c8 00"))
        }
    }

    @Test func partialPacketStaysBuffered() throws {
        var f = H4Framer()
        #expect(try f.push(hex("04 0e 04 01 03")) == [])
        #expect(try f.push(hex("0c 00 04")) == [.event(code: 0x0E, parameters: [1, 3, 0x0C, 0])])
        #expect(try f.push(hex("0f 04 00 01 0d 20")) == [.event(code: 0x0F, parameters: hex("00 01 0d 20"))])
    }
}
