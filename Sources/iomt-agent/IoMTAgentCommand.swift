import ArgumentParser
import IoMTAgent
import IoMTConfig
import Logging
import ServiceLifecycle

/// The executable is a thin shell: argument parsing and process set-up only; every piece of
/// behaviour lives in the library targets.
@main
struct IoMTAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iomt-agent",
        abstract: "Edge gateway for medical sensors: normalized readings, a durable buffer, MQTT store-and-forward.",
        discussion: """
            Shell completions: iomt-agent --generate-completion-script bash|zsh|fish (docs/cli.md).
            Control commands talk to the running agent over control.socket (default /run/iomt-agent/control.sock).
            """,
        version: Agent.version,
        subcommands: [Run.self, Status.self, Devices.self, Alerts.self, Scan.self, Pair.self, Assign.self, Discharge.self,
                      Buffer.self, ConfigCommand.self, Simulate.self],
        defaultSubcommand: nil)
}

struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (YAML).")
    var config: String = "/etc/iomt-agent/agent.yaml"

    @Flag(name: .long, help: "Use the embedded demo configuration (simulated devices, broker on 127.0.0.1) instead of --config.")
    var demo = false

    @Option(name: .long, help: "Replace broker.url (repeat for a failover list), e.g. mqtt://127.0.0.1:1884.")
    var broker: [String] = []

    @Option(name: .long, help: "Replace state_dir.")
    var stateDir: String?

    func load() throws -> AgentConfig {
        var config = try demo ? AgentConfig.demoDefault() : AgentConfig.load(path: self.config)
        if !broker.isEmpty {
            config.broker.endpoints = try broker.map { url in
                do { return try BrokerEndpoint(parsing: url) } catch {
                    throw ValidationError("--broker \(url): \(error)")
                }
            }
        }
        if let stateDir { config.stateDir = stateDir }
        return config
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the agent (the daemon).")

    @OptionGroup var options: ConfigOptions

    @Flag(name: .long, help: "Exit once every simulator with a count has finished and the buffer is empty (tests, benchmarks).")
    var exitWhenDrained = false

    func run() async throws {
        let config: AgentConfig
        do {
            config = try options.load()
        } catch let errors as ConfigErrors {
            // EX_CONFIG (78), no usage text: the unit's RestartPreventExitStatus stops a restart loop.
            printError("\(errors)")
            throw ExitCode(78)
        }
        let logger = makeLogger(level: config.log.level)
        let agent = Agent(config: config, options: .init(exitWhenDrained: exitWhenDrained), logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: agent, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch let error as AgentError {
            logger.critical("\(error.description)")
            throw ExitCode(78) // EX_CONFIG: the message says what to fix
        }
    }
}

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Configuration tools.",
                                                    subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a configuration file: every problem with its line and key path; prints a secret-free summary when valid.")

        @OptionGroup var options: ConfigOptions

        func run() async throws {
            do {
                let config = try options.load()
                print(config.renderSummary())
                print("configuration OK")
            } catch let errors as ConfigErrors {
                print(errors.description)
                throw ExitCode(1)
            }
        }
    }
}

func makeLogger(level: IoMTConfig.LogLevel) -> Logger {
    var logger = Logger(label: "iomt-agent") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = Logger.Level(rawValue: level.rawValue) ?? .info
    return logger
}
