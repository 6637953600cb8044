import IoMTCore

/// The outcome of looking for a frame at the start of the pending bytes.
enum FrameParse {
    /// The bytes so far are a valid frame prefix; wait for more.
    case needMore
    /// Not a frame at this position: drop one byte and look again.
    case invalid(DiscardReason)
    /// A complete frame of this many bytes.
    case frame(Int)
}

/// Byte-wise re-synchronisation shared by the binary decoders: bytes are appended one at a
/// time and a frame is looked for at the start after each, so the result never depends on how
/// the bytes were chunked. A bad frame costs exactly one byte, then the search goes on from the
/// next byte (a real frame may start inside a rejected one).
struct FrameSync: Sendable {
    private(set) var pending: [UInt8] = []
    private var discarded = 0
    private var reason: DiscardReason = .noise
    /// Total bytes discarded since creation (for status).
    private(set) var totalDiscarded = 0

    init(capacity: Int) { pending.reserveCapacity(capacity) }

    mutating func append(_ byte: UInt8) { pending.append(byte) }

    /// The next complete frame, or nil when more bytes are needed. A `.discarded` event for the
    /// bytes skipped before it goes into `events` first.
    mutating func nextFrame(_ parse: (ArraySlice<UInt8>) -> FrameParse, events: inout [DecoderEvent]) -> [UInt8]? {
        while !pending.isEmpty {
            switch parse(pending[...]) {
            case .needMore:
                return nil
            case .invalid(let why):
                if discarded == 0 { reason = why }
                discarded += 1
                totalDiscarded += 1
                pending.removeFirst()
            case .frame(let n):
                let count = min(max(n, 1), pending.count)
                if discarded > 0 {
                    events.append(.discarded(bytes: discarded, reason: reason))
                    discarded = 0
                }
                let frame = Array(pending[0..<count])
                pending.removeFirst(count)
                return frame
            }
        }
        return nil
    }

    /// Declares a frame that parsed but was rejected afterwards (e.g. out of sequence) as discarded.
    mutating func reject(_ bytes: Int, _ why: DiscardReason) {
        if discarded == 0 { reason = why }
        discarded += bytes
        totalDiscarded += bytes
    }
}

/// Turns per-frame oximeter values into one reading per batch of pleth samples (e.g. one per
/// second) plus `.state` events when the device condition changes: the pleth goes out as one
/// waveform observation per batch, never one message per sample.
struct OximetryAssembler: Sendable {
    struct Frame {
        var spo2: ObservationValue
        var pulse: ObservationValue
        /// nil: this device has no perfusion index (the observation is left out).
        var perfusionIndex: ObservationValue?
        var pleth: Double
        /// False when the sensor is off: the batch's waveform becomes `.unavailable(.sensorOff)`.
        var plethValid: Bool
        var conditions: Set<DeviceCondition>
    }

    let samplesPerBatch: Int
    let samplePeriodMilliseconds: Double
    private var samples: [Double] = []
    private var plethInvalid = false
    private var lastState: DeviceState?

    init(samplesPerBatch: Int, samplePeriodMilliseconds: Double) {
        self.samplesPerBatch = max(1, samplesPerBatch)
        self.samplePeriodMilliseconds = samplePeriodMilliseconds
        samples.reserveCapacity(self.samplesPerBatch)
    }

    mutating func add(_ frame: Frame, into events: inout [DecoderEvent]) {
        let state = DeviceState(conditions: frame.conditions)
        if state != lastState {
            lastState = state
            events.append(.state(state))
        }
        samples.append(frame.pleth)
        if !frame.plethValid { plethInvalid = true }
        guard samples.count >= samplesPerBatch else { return }
        var observations = [
            Observation(code: .pulseOximetrySpO2, value: frame.spo2, unit: .percent),
            Observation(code: .pulseOximetryPulseRate, value: frame.pulse, unit: .perMinute),
        ]
        if let pi = frame.perfusionIndex {
            observations.append(Observation(code: .pulseOximetryPerfusionIndex, value: pi, unit: .percent))
        }
        observations.append(Observation(
            code: .pulseOximetryPleth,
            value: plethInvalid ? .unavailable(.sensorOff)
                : .waveform(samples: samples, samplePeriodMilliseconds: samplePeriodMilliseconds),
            unit: .dimensionless))
        events.append(.reading(DecodedReading(observations: observations,
                                              ageMilliseconds: Double(samples.count - 1) * samplePeriodMilliseconds)))
        samples.removeAll(keepingCapacity: true)
        plethInvalid = false
    }

    /// Forgets a partly filled batch (after a loss of sync the samples are no longer evenly spaced).
    mutating func breakBatch() {
        samples.removeAll(keepingCapacity: true)
        plethInvalid = false
    }
}
