import ArgumentParser
import IoMTBench

/// The benchmark runs in its own executable so that none of its code (harness, process control,
/// result tables) is mapped into the daemon: the agent's resident set is part of what it measures.
/// It drives `iomt-agent` (a sibling executable) as a child process.
@main
struct IoMTBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iomt-bench",
        abstract: "Benchmarks (see BENCHMARKS.md): the agent against its baselines, on a real mosquitto and real files.")

    @Flag(name: .long, help: "Small N, for a smoke run (under ~3 minutes).")
    var quick = false

    @Option(name: .long, help: "Write the results as JSON to this file.")
    var out: String?

    @Option(name: .long, help: "Run only these sections, e.g. 1,2 (1 ingest, 2 drain, 3 latency, 4 resources, 5 outage).")
    var only: String?

    @Flag(inversion: .prefixedNo, help: "Drain a 1M backlog in section 2 (default: on in full mode, off with --quick).")
    var million: Bool?

    func run() async throws {
        let sections = Set((only ?? "").split(separator: ",").map { String($0) })
        let ok = await BenchRunner.run(.init(quick: quick, out: out, only: sections, million: million))
        if !ok { throw ExitCode(1) }
    }
}
