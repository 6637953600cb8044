@testable import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTHealthProfiles
import Synchronization
import Testing

/// Collects what the broadcasters hand to the sink.
final class BroadcastSink: ReadingSink {
    let readings = Mutex<[DeviceReading]>([])
    func submit(_ reading: DeviceReading) async -> IngestOutcome {
        let n = readings.withLock { $0.append(reading); return $0.count }
        return .accepted(id: ReadingID(high: 0, low: UInt64(n)), sequence: UInt64(n))
    }
    var all: [DeviceReading] { readings.withLock { $0 } }
}

struct BroadcastTestClock: WallClock {
    func now() -> Timestamp { Timestamp(millisecondsSinceEpoch: 1_790_000_000_000) }
}

@Suite struct BroadcastersTests {
    static let scale = AdvertisementProfile(
        name: "test-scale", source: .serviceData(uuid16: 0x181D),
        require: [.init(offset: 0, mask: 0x20, equals: 0x20)],
        fields: [.init(name: "weight", offset: 1, encoding: .u16le, scale: 0.005, code: .bodyWeight, unit: "kg", invalidRaw: [0xFFFF])])
    static let here = BDAddress("F0:F1:F2:F3:F4:10")!
    static let neighbour = BDAddress("F0:F1:F2:F3:F4:11")!

    /// Flags plus one Service Data 0x181D structure with `payload`.
    static func ad(_ payload: [UInt8], uuid: UInt16 = 0x181D) -> AdvertisingData {
        AdvertisingData([ADStructure(type: 0x01, data: [0x04]),
                         ADStructure(type: 0x16, data: [UInt8(uuid & 0xFF), UInt8(uuid >> 8)] + payload)])
    }

    static func weight(_ o: BroadcastFilter.Outcome) -> Double? {
        guard case .publish(_, let m) = o, case .numeric(let v)? = m.observations.first?.value else { return nil }
        return v
    }

    @Test func samePayloadIsPublishedOnceWithinTheRepeatWindowAndAgainAfterIt() {
        var f = BroadcastFilter([BLEBroadcaster(id: "s", address: Self.here, patientID: "P", profile: Self.scale, repeatWindowMs: 30_000)])
        let stable140 = Self.ad([0x20, 0x60, 0x6D])  // 0x6D60 = 28000 × 0.005 = 140 kg
        let first = f.observe(address: Self.here, data: stable140, nowMs: 1_000)
        #expect(first.count == 1 && Self.weight(first[0]) == 140.0)
        #expect(f.observe(address: Self.here, data: stable140, nowMs: 1_100) == [.duplicate(index: 0)])
        #expect(f.observe(address: Self.here, data: stable140, nowMs: 30_999) == [.duplicate(index: 0)])
        // A different payload is news at once.
        let stable71 = Self.ad([0x20, 0xB8, 0x37])  // 0x37B8 = 14264 → 71.32 kg
        let second = f.observe(address: Self.here, data: stable71, nowMs: 31_000)
        #expect(second.count == 1 && Self.weight(second[0]) == 71.32)
        // Back to the first: it differs from the last published one, so it is published.
        #expect(Self.weight(f.observe(address: Self.here, data: stable140, nowMs: 31_100)[0]) == 140.0)
        // The same again only after the window (counted from its last publication).
        #expect(f.observe(address: Self.here, data: stable140, nowMs: 61_099) == [.duplicate(index: 0)])
        #expect(Self.weight(f.observe(address: Self.here, data: stable140, nowMs: 61_100)[0]) == 140.0)
    }

    @Test func unmetRequireIsNotPublishedAndDoesNotCountAsPublished() {
        var f = BroadcastFilter([BLEBroadcaster(id: "s", address: Self.here, patientID: "P", profile: Self.scale)])
        let unstable = Self.ad([0x00, 0x60, 0x6D])
        #expect(f.observe(address: Self.here, data: unstable, nowMs: 0) == [.notReady(index: 0)])
        #expect(f.observe(address: Self.here, data: unstable, nowMs: 10) == [.notReady(index: 0)])
        // The stabilized weight that follows is published.
        #expect(Self.weight(f.observe(address: Self.here, data: Self.ad([0x20, 0x60, 0x6D]), nowMs: 20)[0]) == 140.0)
    }

    @Test func decodeErrorIsReportedOncePerDistinctPayload() {
        var f = BroadcastFilter([BLEBroadcaster(id: "s", address: Self.here, patientID: "P", profile: Self.scale)])
        let short = Self.ad([0x20, 0x60])  // the weight needs octets 1 and 2
        let out = f.observe(address: Self.here, data: short, nowMs: 0)
        guard case .decodeError(0, let why)? = out.first else { Issue.record("not a decode error: \(out)"); return }
        #expect(why.contains("weight") || why.contains("advertised field"))
        #expect(f.observe(address: Self.here, data: short, nowMs: 5) == [.duplicate(index: 0)])
        // A good payload after it is published; the bad one again is reported again.
        #expect(Self.weight(f.observe(address: Self.here, data: Self.ad([0x20, 0x60, 0x6D]), nowMs: 10)[0]) == 140.0)
        if case .decodeError? = f.observe(address: Self.here, data: short, nowMs: 20).first {} else { Issue.record("not reported again") }
    }

    @Test func onlyTheConfiguredAddressMatchesUnlessAnyAddress() {
        var f = BroadcastFilter([
            BLEBroadcaster(id: "mine", address: Self.here, patientID: "P", profile: Self.scale),
            BLEBroadcaster(id: "any", address: nil, patientID: "Q", profile: Self.scale),
        ])
        let data = Self.ad([0x20, 0x60, 0x6D])
        let fromNeighbour = f.observe(address: Self.neighbour, data: data, nowMs: 0)
        #expect(fromNeighbour.map(\.index) == [1])
        let fromHere = f.observe(address: Self.here, data: data, nowMs: 1)
        // "any" already published this payload (from the neighbour): a duplicate for it.
        #expect(fromHere.map(\.index) == [0, 1])
        #expect(Self.weight(fromHere[0]) == 140.0 && fromHere[1] == .duplicate(index: 1))
        // Another service's data, or none: nothing at all.
        #expect(f.observe(address: Self.here, data: Self.ad([0x20, 0x60, 0x6D], uuid: 0x1809), nowMs: 2).isEmpty)
        #expect(f.observe(address: Self.here, data: AdvertisingData([ADStructure(type: 0x01, data: [0x06])]), nowMs: 3).isEmpty)
    }

    @Test func invalidRawIsPublishedAsUnavailable() {
        var f = BroadcastFilter([BLEBroadcaster(id: "s", address: Self.here, patientID: "P", profile: Self.scale)])
        let out = f.observe(address: Self.here, data: Self.ad([0x20, 0xFF, 0xFF]), nowMs: 0)
        guard case .publish(_, let m)? = out.first else { Issue.record("not published: \(out)"); return }
        #expect(m.observations == [Observation(code: .bodyWeight, value: .unavailable(.missing), unit: "kg")])
    }

    @Test func manufacturerDataSource() {
        let p = AdvertisementProfile(name: "t", source: .manufacturerData(companyID: 0x0157),
                                     fields: [.init(name: "t", offset: 0, encoding: .s16le, scale: 0.1, code: .bodyTemperature, unit: "Cel")])
        var f = BroadcastFilter([BLEBroadcaster(id: "t", address: Self.here, patientID: "P", profile: p)])
        let data = AdvertisingData([ADStructure(type: 0xFF, data: [0x57, 0x01, 0x6F, 0x01])])  // 367 → 36.7
        let out = f.observe(address: Self.here, data: data, nowMs: 0)
        guard case .publish(_, let m)? = out.first, case .numeric(let v) = m.observations[0].value else { Issue.record("\(out)"); return }
        #expect(abs(v - 36.7) < 1e-9 && m.observations[0].unit == "Cel")
    }

    @Test func actorDeliversReadingsCountsErrorsAndKeepsStatus() async throws {
        let sink = BroadcastSink()
        let board = StatusBoard([])
        let b = Broadcasters([BLEBroadcaster(id: "scale-4", address: Self.here, patientID: "P-1001", profile: Self.scale)],
                             sink: sink, clock: BroadcastTestClock(), logger: testLogger("broadcast"), board: board)
        #expect(board.snapshot().first?.detail == "not seen yet")
        await b.observe(address: Self.here, data: Self.ad([0x20, 0x60, 0x6D]), nowMs: 0)
        await b.observe(address: Self.here, data: Self.ad([0x20, 0x60, 0x6D]), nowMs: 100)
        await b.observe(address: Self.here, data: Self.ad([0x00, 0x00, 0x00]), nowMs: 200)
        await b.observe(address: Self.here, data: Self.ad([0x20]), nowMs: 300)
        await b.observe(address: Self.neighbour, data: Self.ad([0x20, 0x00, 0x10]), nowMs: 400)
        let r = try #require(sink.all.count == 1 ? sink.all[0] : nil)
        #expect(r.device == DeviceRef(id: "scale-4", profile: "test-scale", transport: .ble))
        #expect(r.patientID == "P-1001" && r.timeQuality == .gatewayReceipt)
        #expect(r.measuredAt == BroadcastTestClock().now() && r.receivedAt == BroadcastTestClock().now())
        #expect(r.observations == [Observation(code: .bodyWeight, value: .numeric(140), unit: "kg")])
        #expect(await b.decodeErrors == 1)
        #expect(await b.published == 1)
        let status = try #require(board.snapshot().first)
        #expect(status.deviceID == "scale-4" && status.transport == .ble && !status.connected)
        let t = "\(BroadcastTestClock().now())"
        #expect(status.detail == "last seen \(t), last published \(t), 1 undecodable payload")
        #expect(status.detail?.contains("P-1001") == false)
    }
}
