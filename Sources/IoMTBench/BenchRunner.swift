#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `iomt-bench`: runs every benchmark of BENCHMARKS.md in one process, side by side
/// with its baseline, and prints a Markdown table (and writes JSON with `out`).
public enum BenchRunner {
    public struct Options: Sendable {
        public var quick: Bool
        public var out: String?
        /// Section numbers to run ("1"..."5"); empty: all.
        public var only: Set<String>
        /// Also drain a 1M backlog in-process (section 2). Default: on in full mode.
        public var million: Bool

        public init(quick: Bool, out: String?, only: Set<String>, million: Bool? = nil) {
            self.quick = quick
            self.out = out
            self.only = only
            self.million = million ?? !quick
        }
    }

    /// Returns false when a benchmark failed (the table holds what was measured).
    public static func run(_ options: Options) async -> Bool {
        let results = Results()
        results.mode = options.quick ? "quick" : "full"
        results.machine = machineDescription()
        print("iomt-bench (\(results.mode)) on \(results.machine.map { "\($0.0)=\($0.1)" }.joined(separator: ", "))")
        guard access(siblingExecutable("raw-publisher"), X_OK) == 0 else {
            print("error: \(siblingExecutable("raw-publisher")) not found; build all targets (swift build -c release)")
            return false
        }
        let start = monoNanos()
        var ok = true
        let sections: [(String, (Results, Bool) async throws -> Void)] = [
            ("1", { try await IngestBench.run($0, quick: $1) }),
            ("2", { try await DrainBench.run($0, quick: $1, withMillion: options.million) }),
            ("3", { try await LatencyBench.run($0, quick: $1) }),
            ("4", { try await ResourceBench.run($0, quick: $1) }),
            ("5", { try await OutageBench.run($0, quick: $1) }),
        ]
        for (id, section) in sections where options.only.isEmpty || options.only.contains(id) {
            let t = monoNanos()
            do {
                try await section(results, options.quick)
            } catch {
                ok = false
                results.note("section \(id) FAILED: \(error)")
            }
            ChildProcess.killAll() // whatever a failed section left running, by PID
            print("  (section \(id): \(Results.fmt(elapsedSeconds(since: t))) s)")
        }
        results.note("total bench time \(Results.fmt(elapsedSeconds(since: start))) s")
        print("")
        print(results.table())
        if let out = options.out {
            do { try writeFile(out, results.json()) } catch {
                print("error: \(error)")
                ok = false
            }
        }
        return ok
    }

    static func machineDescription() -> [(String, String)] {
        var m: [(String, String)] = []
        m.append(("nproc", "\(sysconf(Int32(_SC_NPROCESSORS_ONLN)))"))
        let cpuinfo = readFile("/proc/cpuinfo") ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") || $0.hasPrefix("Model") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingSpaces } ?? "unknown"
        m.append(("cpu", model))
        if let mem = readFile("/proc/meminfo")?.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal") }) {
            m.append(("memory", String(mem.split(separator: ":", maxSplits: 1).last ?? "").trimmingSpaces))
        }
        let tmp = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        m.append(("temp_dir", tmp))
        // The mount holding the temp dir: device and file system.
        var best = ("", "", "")
        for line in (readFile("/proc/mounts") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3 else { continue }
            let mp = String(f[1])
            if (tmp == mp || tmp.hasPrefix(mp == "/" ? "/" : mp + "/")) && mp.count >= best.1.count {
                best = (String(f[0]), mp, String(f[2]))
            }
        }
        m.append(("disk", "\(best.0) on \(best.1) (\(best.2))"))
        if best.0.hasPrefix("/dev/") {
            let name = String(best.0.dropFirst(5)).filter { !$0.isNumber || true }
            if let rot = readFile("/sys/block/\(name)/queue/rotational") {
                m.append(("rotational", rot.trimmingSpaces))
            }
        }
        if let uname = readFile("/proc/sys/kernel/osrelease") { m.append(("kernel", uname.trimmingSpaces)) }
        return m
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\n" { s = s.dropLast() }
        return String(s)
    }
}
