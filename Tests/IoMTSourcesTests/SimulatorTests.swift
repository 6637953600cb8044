import IoMTCore
import Synchronization
import Testing
@testable import IoMTSources

/// A sink that records what it gets and accepts everything (the real sink is the ingestor,
/// tested end to end in IoMTAgentTests).
final class RecordingSink: ReadingSink {
    let readings = Mutex<[DeviceReading]>([])
    func submit(_ reading: DeviceReading) async -> IngestOutcome {
        let n = readings.withLock { $0.append(reading); return $0.count }
        return .accepted(id: ReadingID(high: 0x7000, low: 0x8000_0000_0000_0000), sequence: UInt64(n))
    }
}

struct FixedClock: WallClock {
    var time: Timestamp
    func now() -> Timestamp { time }
}

@Suite struct SimulatorTests {
    let t = Timestamp(millisecondsSinceEpoch: 1_764_093_159_000)

    @Test(arguments: SimulatedProfile.allCases)
    func sameSeedAndIndexGiveTheSameReading(_ profile: SimulatedProfile) {
        let a = SimulatorSource(id: "d", profile: profile, patientID: "P", rate: 1, count: nil, seed: 7)
        let b = SimulatorSource(id: "d", profile: profile, patientID: "P", rate: 1, count: nil, seed: 7)
        let c = SimulatorSource(id: "d", profile: profile, patientID: "P", rate: 1, count: nil, seed: 8)
        #expect(a.reading(index: 3, at: t) == b.reading(index: 3, at: t))
        #expect((0..<20).contains { a.reading(index: $0, at: t) != c.reading(index: $0, at: t) })
    }

    @Test(arguments: SimulatedProfile.allCases)
    func valuesArePhysiologicalAndNeverNonFinite(_ profile: SimulatedProfile) {
        let sim = SimulatorSource(id: "d", profile: profile, patientID: "P", rate: 1, count: nil, seed: 1)
        for i in 0..<500 {
            for o in sim.reading(index: i, at: t).observations {
                switch o.value {
                case .numeric(let v):
                    #expect(v.isFinite)
                    switch o.code {
                    case .pulseOximetrySpO2: #expect((70...100).contains(v))
                    case .pulseOximetryPulseRate, .pulseRateNonInvasive: #expect((30...250).contains(v))
                    case .systolic: #expect((60...250).contains(v))
                    case .diastolic: #expect((30...150).contains(v))
                    case .bodyTemperature: #expect((34...42).contains(v))
                    default: break
                    }
                case .waveform(let samples, let period):
                    #expect(samples.count == 75)
                    #expect(period > 13 && period < 14)
                    #expect(samples.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 100 })
                case .unavailable(let status):
                    #expect(profile == .pulseOximeter && status == .sensorOff)
                }
            }
        }
    }

    @Test func fingerOutIsAStatusNotANumber() {
        let sim = SimulatorSource(id: "ox", profile: .pulseOximeter, patientID: "P", rate: 1, count: nil, seed: 1)
        let r = sim.reading(index: 39, at: t)
        #expect(r.observations.map(\.value) == [.unavailable(.sensorOff), .unavailable(.sensorOff)])
    }

    @Test func bloodPressureCarriesMDCCodesUnitsAndLOINC() {
        let sim = SimulatorSource(id: "bp", profile: .bloodPressure, patientID: "P", rate: 1, count: nil, seed: 1)
        let obs = sim.reading(index: 0, at: t).observations
        #expect(obs.map(\.code) == [.systolic, .diastolic, .meanArterialPressure, .pulseRateNonInvasive])
        #expect(obs.map(\.unit) == [.millimetreMercury, .millimetreMercury, .millimetreMercury, .perMinute])
        #expect(obs.map(\.loinc) == ["8480-6", "8462-4", nil, "8867-4"])
    }

    @Test func runStopsAfterCountAtTheConfiguredRate() async throws {
        let sink = RecordingSink()
        let sim = SimulatorSource(id: "th", profile: .thermometer, patientID: "P-9", rate: 100, count: 25, seed: 3,
                                  clock: FixedClock(time: t))
        let start = ContinuousClock.now
        try await sim.run(into: sink)
        let elapsed = ContinuousClock.now - start
        let got = sink.readings.withLock { $0 }
        #expect(got.count == 25)
        #expect(elapsed >= .milliseconds(230))   // 24 periods of 10 ms
        #expect(got.allSatisfy { $0.patientID == "P-9" && $0.device.id == "th" && $0.measuredAt == t })
        #expect(got.first == sim.reading(index: 0, at: t))
    }

    @Test func cancellationStopsAnEndlessSimulator() async throws {
        let sink = RecordingSink()
        let sim = SimulatorSource(id: "ox", profile: .pulseOximeter, patientID: "P", rate: 50, count: nil, seed: 1)
        let task = Task { try await sim.run(into: sink) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(sink.readings.withLock { $0.count } > 0)
    }
}
