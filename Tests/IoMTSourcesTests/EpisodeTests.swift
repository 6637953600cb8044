import IoMTCore
import IoMTSources
import Testing

@Suite("Simulator desaturation episode")
struct EpisodeTests {
    static let t = Timestamp(millisecondsSinceEpoch: 1_750_000_000_000)

    static func spo2(_ r: DeviceReading) -> ObservationValue? {
        r.observations.first { $0.code == .pulseOximetrySpO2 }?.value
    }

    @Test("readings inside the episode carry its SpO2 and no finger-out; outside they are unchanged")
    func episodeReplacesSpO2Only() {
        let plain = SimulatorSource(id: "ox", profile: .pulseOximeter, patientID: "P", rate: 2, count: nil, seed: 5)
        let episode = SimulatorSource(id: "ox", profile: .pulseOximeter, patientID: "P", rate: 2, count: nil, seed: 5,
                                      episode: .init(afterSeconds: 10, durationSeconds: 30, spo2: 84))
        for i in 0..<120 {
            let a = plain.reading(index: i, at: Self.t), b = episode.reading(index: i, at: Self.t)
            let elapsed = Double(i) / 2
            if elapsed >= 10 && elapsed < 40 {
                #expect(Self.spo2(b) == .numeric(84), "index \(i)")
                if case .numeric = Self.spo2(a) {
                    #expect(Array(a.observations.dropFirst()) == Array(b.observations.dropFirst()), "index \(i)")
                }
            } else {
                #expect(a == b, "index \(i)")
            }
        }
        // Index 39 (19.5 s) would be a finger-out reading without the episode.
        #expect(Self.spo2(plain.reading(index: 39, at: Self.t)) == .unavailable(.sensorOff))
    }
}

@Suite("Simulator flapping episode")
struct FlappingEpisodeTests {
    @Test("with alternate_s the episode alternates low and normal values")
    func alternates() {
        let sim = SimulatorSource(id: "ox", profile: .pulseOximeter, patientID: "P", rate: 1, count: nil, seed: 3,
                                  episode: .init(afterSeconds: 0, durationSeconds: 10, spo2: 89, alternateSeconds: 2))
        let values = (0..<10).map { EpisodeTests.spo2(sim.reading(index: $0, at: EpisodeTests.t)) }
        for (i, v) in values.enumerated() {
            if (i / 2) % 2 == 0 { #expect(v == .numeric(89), "index \(i)") } else { #expect(v != .numeric(89), "index \(i)") }
        }
    }
}
