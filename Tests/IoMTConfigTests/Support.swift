import Foundation
import Testing
@testable import IoMTConfig

/// Parses text that must be valid.
func parseValid(_ yaml: String, source: String = "agent.yaml") throws -> AgentConfig {
    do {
        return try AgentConfig.parse(yaml: yaml, source: source)
    } catch {
        Issue.record("unexpected problems:\n\(error.description)")
        throw error
    }
}

/// Parses text that must be invalid; returns the problems (empty, with an issue, if it parsed).
func problems(_ yaml: String, source: String = "agent.yaml") -> ConfigErrors {
    do {
        let config = try AgentConfig.parse(yaml: yaml, source: source)
        Issue.record("expected problems, but it parsed: \(config)")
        return ConfigErrors([])
    } catch {
        return error
    }
}

/// The one problem about `keyPath`, recording an issue if there is not exactly one.
func problem(_ errors: ConfigErrors, at keyPath: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigProblem? {
    let matching = errors.problems.filter { $0.keyPath == keyPath }
    #expect(matching.count == 1, "problems about \(keyPath):\n\(errors.description)", sourceLocation: sourceLocation)
    return matching.first
}

/// The smallest valid configuration.
let minimalYAML = """
    gateway:
      id: hub-001
    broker:
      url: mqtt://127.0.0.1:1883
    """

/// The repository root (for `deploy/agent.yaml`).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
