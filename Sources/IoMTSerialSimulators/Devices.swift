import IoMTSerial

/// A simulated device as a pure state machine: bytes it sends every `periodMilliseconds`, and
/// its answers to what the host sends. `PtyPlayer` plays it on a pseudo-terminal in real time.
public protocol SimulatedDevice: Sendable {
    var periodMilliseconds: Int { get }
    mutating func tick() -> [UInt8]
    mutating func hostSent(_ bytes: [UInt8]) -> [UInt8]
}

/// Faults a simulator mixes in, each every `n`-th frame (0 = never).
public struct Faults: Sendable {
    public var startupNoise: [UInt8]
    public var truncateEvery: Int
    public var corruptEvery: Int
    public init(startupNoise: [UInt8] = [], truncateEvery: Int = 0, corruptEvery: Int = 0) {
        self.startupNoise = startupNoise
        self.truncateEvery = truncateEvery
        self.corruptEvery = corruptEvery
    }
}

/// Contec old protocol: 60 frames/s, 3 frames per 50 ms tick. Values: SpO2 `spo2`, PR `pulse`.
public struct ContecLegacySimulator: SimulatedDevice {
    public var spo2: Int
    public var pulse: Int
    public var faults: Faults
    public private(set) var frame = 0
    public var periodMilliseconds: Int { 50 }

    public init(spo2: Int = 97, pulse: Int = 72, faults: Faults = Faults()) {
        self.spo2 = spo2
        self.pulse = pulse
        self.faults = faults
    }

    public mutating func tick() -> [UInt8] {
        var out: [UInt8] = frame == 0 ? faults.startupNoise : []
        for _ in 0..<3 {
            frame += 1
            var f = ContecLegacyEncoder.frame(spo2: spo2, pulse: pulse, pleth: frame % 100)
            if faults.truncateEvery > 0, frame % faults.truncateEvery == 0 { f.removeLast(2) }
            out += f
        }
        return out
    }

    public mutating func hostSent(_ bytes: [UInt8]) -> [UInt8] { [] }
}

/// Contec V7.0: silent until the start command `A1`; then 60 packets/s until `streamLifetime`
/// milliseconds pass without a keep-alive (`AF`) or a new start (the real device: ~30 s).
public struct ContecV7Simulator: SimulatedDevice {
    public var spo2: Int
    public var pulse: Int
    public var streamLifetimeMilliseconds: Int
    public private(set) var startsReceived = 0
    public private(set) var keepAlivesReceived = 0
    private var streaming = false
    private var sinceRefresh = 0
    private var frame = 0
    private var pending: [UInt8] = []
    /// Packets written per tick (3 = every 50 ms, 1 = every 17 ms, as a device without a
    /// buffering USB bridge would).
    public var framesPerTick: Int
    public var periodMilliseconds: Int { max(1, Int((Double(framesPerTick) * 1000 / 60).rounded())) }

    public init(spo2: Int = 97, pulse: Int = 65, streamLifetimeMilliseconds: Int = 30_000, framesPerTick: Int = 3) {
        self.spo2 = spo2
        self.pulse = pulse
        self.streamLifetimeMilliseconds = streamLifetimeMilliseconds
        self.framesPerTick = max(1, framesPerTick)
    }

    public mutating func tick() -> [UInt8] {
        guard streaming else { return [] }
        sinceRefresh += periodMilliseconds
        if sinceRefresh > streamLifetimeMilliseconds { streaming = false; return [] }
        var out: [UInt8] = []
        for _ in 0..<framesPerTick {
            frame += 1
            out += ContecV7Encoder.realTime(spo2: spo2, pulse: pulse, pleth: frame % 128)
        }
        return out
    }

    public mutating func hostSent(_ bytes: [UInt8]) -> [UInt8] {
        pending += bytes
        while pending.count >= 9 {
            guard pending[0] == 0x7D else { pending.removeFirst(); continue }
            let command = (pending[2] & 0x7F) | ((pending[1] & 1) << 7)
            pending.removeFirst(9)
            switch command {
            case 0xA1: startsReceived += 1; streaming = true; sinceRefresh = 0
            case 0xAF: keepAlivesReceived += 1; sinceRefresh = 0
            case 0xA2: streaming = false
            default: break
            }
        }
        return []
    }
}

/// Nonin #2: 75 frames/s (one 25-frame packet per 1/3 s, sent per tick).
public struct NoninDF2Simulator: SimulatedDevice {
    public var hr: Int
    public var spo2: Int
    public var faults: Faults
    private var packet = 0
    private var queued: [UInt8] = []
    /// 5-byte frames written per tick (25 = a packet every 333 ms, 1 = a frame every 13 ms).
    public var framesPerTick: Int
    public var periodMilliseconds: Int { max(1, Int((Double(framesPerTick) * 1000 / 75).rounded())) }
    public init(hr: Int = 72, spo2: Int = 97, faults: Faults = Faults(), framesPerTick: Int = 25) {
        self.hr = hr
        self.spo2 = spo2
        self.faults = faults
        self.framesPerTick = max(1, framesPerTick)
    }
    public mutating func tick() -> [UInt8] {
        var out: [UInt8] = []
        while out.count < framesPerTick * 5 {
            if queued.isEmpty {
                packet += 1
                var p = NoninEncoder.packet(format: .df2, hr: hr, spo2: spo2, pleth: { ($0 * 9) & 0xFF })
                if faults.corruptEvery > 0, packet % faults.corruptEvery == 0 { p[9] ^= 0x04 }
                queued = (packet == 1 ? faults.startupNoise : []) + p
            }
            let n = min(queued.count, framesPerTick * 5 - out.count)
            out += queued.prefix(n)
            queued.removeFirst(n)
        }
        return out
    }
    public mutating func hostSent(_ bytes: [UInt8]) -> [UInt8] { [] }
}

/// Masimo ASCII 1: one line a second.
public struct MasimoSimulator: SimulatedDevice {
    public var spo2: Int
    public var bpm: Int
    private var second = 0
    public var periodMilliseconds: Int { 1000 }
    public init(spo2: Int = 98, bpm: Int = 97) {
        self.spo2 = spo2
        self.bpm = bpm
    }
    public mutating func tick() -> [UInt8] {
        second += 1
        return MasimoEncoder.line(second: second, spo2: spo2, bpm: bpm, pi: 3.6)
    }
    public mutating func hostSent(_ bytes: [UInt8]) -> [UInt8] { [] }
}

extension OneTouchMeterSimulator: SimulatedDevice {
    public var periodMilliseconds: Int { 1000 }
    public mutating func tick() -> [UInt8] { [] }
}
