#if canImport(Glibc)
import Glibc
#endif
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import IoMTSerialSimulators
import Logging

// Benchmarks for BENCHMARKS.md (issue 4). Build with -c release.
//   iomt-serial-bench decode                 CPU time per million bytes, per decoder
//   iomt-serial-bench oximeters [n] [secs]   n serial oximeters on ptys (player in a child process),
//                                            CPU of this process (link threads + SerialSources)
//   iomt-serial-bench play <dir> <n> <secs>  (the child: plays n oximeters on ptys under dir)

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func decodeBenchmark() {
    var rng = SimRandom(seed: 1)
    let target = 8_000_000
    func stream(_ make: () -> [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(target + 4096)
        while b.count < target { b += make() }
        return b
    }
    var frame = 0
    let cases: [(String, [UInt8], () -> any StreamDecoder)] = [
        ("contec-cms50-legacy", stream { frame += 1; return ContecLegacyEncoder.frame(spo2: 97, pulse: 72, pleth: frame % 100) }, { ContecLegacyDecoder() }),
        ("contec-cms50-v7", stream { frame += 1; return ContecV7Encoder.realTime(spo2: 97, pulse: 65, pleth: frame % 128, perfusionIndex: 360) }, { ContecV7Decoder() }),
        ("nonin-df2", stream { NoninEncoder.packet(format: .df2, hr: 72, spo2: 97, pleth: { $0 * 9 }) }, { NoninFrameDecoder(format: .df2) }),
        ("nonin-df7", stream { NoninEncoder.packet(format: .df7, hr: 72, spo2: 97, pleth: { $0 * 2000 }) }, { NoninFrameDecoder(format: .df7) }),
        ("nonin-df8", stream { NoninEncoder.df8(hr: 72, spo2: 97) }, { NoninDF8Decoder() }),
        ("masimo-ascii1", stream { frame += 1; return MasimoEncoder.line(second: frame, spo2: 98, bpm: 97, pi: 3.6) }, { MasimoASCII1Decoder() }),
        ("line profile (masimo)", Array(stream { frame += 1; return MasimoEncoder.line(second: frame, spo2: 98, bpm: 97, pi: 3.6) }.prefix(500_000)),
         { LineProfileDecoder(unchecked: .masimoASCII1Example) }),
        ("noise into contec-v7", (0..<target).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, { ContecV7Decoder() }),
    ]
    print("| decoder | bytes | readings | CPU s per 10^6 bytes | MB/s |")
    print("|---|---|---|---|---|")
    for (name, bytes, make) in cases {
        func go<D: StreamDecoder>(_ d: D) -> (Int, Double) {
            var d = d
            var readings = 0
            let start = threadCPUSeconds()
            var i = 0
            while i < bytes.count {
                for e in d.feed(bytes[i..<min(bytes.count, i + 256)]) {
                    if case .reading = e { readings += 1 }
                }
                i += 256
            }
            return (readings, threadCPUSeconds() - start)
        }
        let (readings, cpu) = go(make())
        let perMillion = cpu / (Double(bytes.count) / 1e6)
        print("| \(name) | \(bytes.count) | \(readings) | \(format3(perMillion)) | \(format1(Double(bytes.count) / 1e6 / cpu)) |")
    }
}

func format3(_ v: Double) -> String { String(Double(Int((v * 1000).rounded())) / 1000) }
func format1(_ v: Double) -> String { String(Double(Int((v * 10).rounded())) / 10) }

actor CountingSink: ReadingSink {
    var count = 0
    var pleth = 0
    func submit(_ reading: DeviceReading) async -> IngestOutcome {
        count += 1
        for o in reading.observations { if case .waveform(let s, _) = o.value { pleth += s.count } }
        return .accepted(id: ReadingID(high: 0, low: UInt64(count)), sequence: UInt64(count))
    }
}

func play(dir: String, n: Int, seconds: Int, perFrame: Bool) {
    var players: [PtyPlayer] = []
    for i in 0..<n {
        guard let pty = try? PtyDevice() else { print("no pty"); exit(1) }
        try? pty.link(at: "\(dir)/ox-\(i)")
        let device: any SimulatedDevice = i % 2 == 0 ? ContecV7Simulator(spo2: 97, pulse: 60 + i, framesPerTick: perFrame ? 1 : 3)
            : NoninDF2Simulator(hr: 60 + i, spo2: 96, framesPerTick: perFrame ? 1 : 25)
        players.append(PtyPlayer(device, on: pty))
    }
    sleep(UInt32(seconds))
    for p in players { p.stop(); p.pty.unplug() }
}

func oximeters(n: Int, seconds: Int, perFrame: Bool) async {
    let dir = "/tmp/iomt-serial-bench-\(getpid())"
    mkdir(dir, 0o755)
    let exe = "/proc/self/exe"
    var pid: pid_t = 0
    let args = [exe, "play", dir, String(n), String(seconds + 4)] + (perFrame ? ["per-frame"] : [])
    var cargs = args.map { strdup($0) } + [nil]
    guard posix_spawn(&pid, exe, nil, nil, &cargs, environ) == 0 else { print("cannot spawn the player"); return }
    usleep(500_000)
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let sink = CountingSink()
    let sources = (0..<n).map { i in
        SerialSource(configuration: .init(id: "ox-\(i)", patientID: "P-\(i)", profile: i % 2 == 0 ? .contecV7 : .noninDF2,
                                          port: .path("\(dir)/ox-\(i)")), logger: logger)
    }
    let tasks = sources.map { s in Task { try? await s.run(into: sink) } }
    try? await Task.sleep(for: .seconds(2))  // connected and streaming
    let cpu0 = cpuSeconds(), wall0 = monotonicMilliseconds(), count0 = await sink.count, pleth0 = await sink.pleth
    try? await Task.sleep(for: .seconds(seconds))
    let cpu1 = cpuSeconds(), wall1 = monotonicMilliseconds(), count1 = await sink.count, pleth1 = await sink.pleth
    for t in tasks { t.cancel() }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let wall = Double(wall1 - wall0) / 1000
    let share = (cpu1 - cpu0) / wall * 100
    print("\(n) oximeters (\(n - n / 2) Contec V7 at 60/s, \(n / 2) Nonin #2 at 75/s), \(perFrame ? "one write per frame" : "frames batched per write (3 Contec / 25 Nonin)"), \(format1(wall)) s:")
    print("  readings \(count1 - count0) (\(format1(Double(count1 - count0) / wall))/s), pleth samples \(pleth1 - pleth0) (\(format1(Double(pleth1 - pleth0) / wall))/s)")
    print("  CPU \(format3(cpu1 - cpu0)) s = \(format3(share)) % of one core (link threads, decoding, SerialSource; no buffer/MQTT)")
}

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "decode" {
case "play":
    play(dir: args[2], n: Int(args[3]) ?? 8, seconds: Int(args[4]) ?? 20, perFrame: args.count > 5 && args[5] == "per-frame")
case "oximeters":
    await oximeters(n: args.count > 2 ? Int(args[2]) ?? 8 : 8, seconds: args.count > 3 ? Int(args[3]) ?? 20 : 20,
                    perFrame: args.count > 4 && args[4] == "per-frame")
default:
    decodeBenchmark()
}
