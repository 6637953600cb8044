import IoMTCore

/// The device profiles the built-in simulator can play.
public enum SimulatedProfile: String, Sendable, CaseIterable {
    case pulseOximeter = "pulse-oximeter"
    case bloodPressure = "blood-pressure"
    case thermometer = "thermometer"
}

/// A simulated device: deterministic readings (a function of `seed` and the reading's index)
/// at a fixed rate, optionally stopping after `count`. It feeds the demo and the tests, and
/// stands in for real devices behind the same `ReadingSource` interface.
///
/// Pacing: reading *n* is due at `start + n / rate`; a source that falls behind (because the
/// sink applied back-pressure) does not burst to catch up beyond the readings already due.
public struct SimulatorSource: ReadingSource {
    /// A scripted desaturation for the pulse oximeter (issue 9): from `afterSeconds` for
    /// `durationSeconds` of reading time (reading index / rate) SpO2 is `spo2` and no reading
    /// is a "finger out" one; before and after, the readings are exactly those without it.
    /// With `alternateSeconds`, the episode flaps: `spo2` for that long, then the normal value
    /// for that long, and so on (values flapping around a threshold).
    public struct Episode: Hashable, Sendable {
        public var afterSeconds: Double
        public var durationSeconds: Double
        public var spo2: Double
        public var alternateSeconds: Double?
        public init(afterSeconds: Double, durationSeconds: Double, spo2: Double, alternateSeconds: Double? = nil) {
            self.afterSeconds = afterSeconds
            self.durationSeconds = durationSeconds
            self.spo2 = spo2
            self.alternateSeconds = alternateSeconds
        }

        func applies(at elapsed: Double) -> Bool {
            guard elapsed >= afterSeconds, elapsed < afterSeconds + durationSeconds else { return false }
            guard let period = alternateSeconds, period > 0 else { return true }
            return Int(((elapsed - afterSeconds) / period).rounded(.down)) % 2 == 0
        }
    }

    public let device: DeviceRef
    public let episode: Episode?
    public let patientID: String
    public let rate: Double
    public let count: Int?
    public let seed: UInt64
    public let clock: any WallClock

    public var sourceID: String { device.id }
    public var sourceStatus: SourceStatus {
        SourceStatus(deviceID: device.id, profile: device.profile, transport: .simulated, connected: true)
    }

    public init(id: String, profile: SimulatedProfile, patientID: String, rate: Double, count: Int?,
                seed: UInt64, clock: any WallClock = SystemWallClock(), episode: Episode? = nil) {
        self.episode = episode
        self.device = DeviceRef(id: id, profile: profile.rawValue, transport: .simulated,
                                serialNumber: "SIM-\(profile.rawValue)-\(seed)")
        self.patientID = patientID
        self.rate = rate
        self.count = count
        self.seed = seed
        self.clock = clock
    }

    public var profile: SimulatedProfile { SimulatedProfile(rawValue: device.profile) ?? .pulseOximeter }

    public func run(into sink: any ReadingSink) async throws {
        let period = Duration.nanoseconds(Int64((1e9 / max(rate, 0.001)).rounded()))
        let monotonic = ContinuousClock()
        let start = monotonic.now
        var index = 0
        while count.map({ index < $0 }) ?? true {
            try Task.checkCancellation()
            let due = start.advanced(by: period * index)
            if due > monotonic.now { try await Task.sleep(until: due, clock: monotonic) }
            _ = await sink.submit(reading(index: index, at: clock.now()))
            index += 1
        }
    }

    /// The reading with this index, measured at `time`. Pure: the same inputs give the same reading.
    public func reading(index: Int, at time: Timestamp) -> DeviceReading {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ UInt64(index))
        let observations: [Observation]
        switch profile {
        case .pulseOximeter:
            let elapsed = Double(index) / max(rate, 0.001)
            let inEpisode = episode.map { $0.afterSeconds <= elapsed && elapsed < $0.afterSeconds + $0.durationSeconds } ?? false
            let lowNow = episode?.applies(at: elapsed) ?? false
            // Every 40th reading the "finger is out": no number, a status instead.
            if index % 40 == 39, !inEpisode {
                observations = [
                    Observation(code: .pulseOximetrySpO2, value: .unavailable(.sensorOff), unit: .percent),
                    Observation(code: .pulseOximetryPulseRate, value: .unavailable(.sensorOff), unit: .perMinute),
                ]
            } else {
                let pulse = 60 + Double(rng.next() % 30)
                // A 75 Hz pleth batch covering one second, shaped by the pulse rate.
                let samples = (0..<75).map { i -> Double in
                    let phase = Double(i) / 75 * pulse / 60
                    let frac = phase - phase.rounded(.down)
                    return (frac < 0.3 ? frac / 0.3 : (1 - frac) / 0.7) * 100
                }.map { ($0 * 10).rounded() / 10 }
                let spo2 = Double(94 + rng.next() % 6)
                observations = [
                    Observation(code: .pulseOximetrySpO2, value: .numeric(lowNow ? episode?.spo2 ?? spo2 : spo2), unit: .percent),
                    Observation(code: .pulseOximetryPulseRate, value: .numeric(pulse), unit: .perMinute),
                    Observation(code: .pulseOximetryPerfusionIndex, value: .numeric(Double(10 + rng.next() % 40) / 10), unit: .percent),
                    Observation(code: .pulseOximetryPleth, value: .waveform(samples: samples, samplePeriodMilliseconds: 1000.0 / 75),
                                unit: .dimensionless),
                ]
            }
        case .bloodPressure:
            let systolic = Double(110 + rng.next() % 30)
            let diastolic = Double(70 + rng.next() % 20)
            let mean = ((systolic + 2 * diastolic) / 3 * 10).rounded() / 10
            observations = [
                Observation(code: .systolic, value: .numeric(systolic), unit: .millimetreMercury),
                Observation(code: .diastolic, value: .numeric(diastolic), unit: .millimetreMercury),
                Observation(code: .meanArterialPressure, value: .numeric(mean), unit: .millimetreMercury),
                Observation(code: .pulseRateNonInvasive, value: .numeric(Double(60 + rng.next() % 30)), unit: .perMinute),
            ]
        case .thermometer:
            observations = [
                Observation(code: .bodyTemperature, value: .numeric(Double(364 + rng.next() % 10) / 10), unit: .celsius),
            ]
        }
        return DeviceReading(device: device, patientID: patientID, measuredAt: time, receivedAt: time,
                             timeQuality: .simulated, observations: observations)
    }
}

