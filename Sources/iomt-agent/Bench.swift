import ArgumentParser

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmarks (see BENCHMARKS.md).")
    func run() async throws {
        throw ValidationError("not implemented yet")
    }
}
