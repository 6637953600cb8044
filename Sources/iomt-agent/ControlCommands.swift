import ArgumentParser
import IoMTAgent
import IoMTConfig
import IoMTControl
import IoMTRegistry
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

// The control commands (docs/cli.md): thin wrappers over ControlCLISession and TextRendering.

/// Loads the configuration, opens a session (daemon or, if allowed, the state directory alone),
/// runs `body`, and turns failures into a message on standard error and an exit code:
/// 1 refused or failed, 69 no agent running (EX_UNAVAILABLE), 78 configuration problem.
func withSession(_ options: ConfigOptions, standalone: Bool, _ body: (ControlCLISession) async throws -> Void) async throws {
    let config: AgentConfig
    do {
        config = try options.load()
    } catch let errors as ConfigErrors {
        printError("\(errors)")
        throw ExitCode(78)
    }
    do {
        let session = try await ControlCLISession(config: config, standalone: standalone, logger: makeLogger(level: .warning))
        do {
            try await body(session)
        } catch {
            await session.close()
            throw error
        }
        await session.close()
    } catch let e as ControlClientError {
        printError("\(e)")
        if case .noAgent = e { throw ExitCode(69) }
        throw ExitCode(1)
    } catch let e as ControlError {
        printError(e.message)
        throw ExitCode(1)
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("\(error)")
        throw ExitCode(1)
    }
}

func printError(_ text: String) {
    var err = StandardError()
    print("iomt-agent: \(text)", to: &err)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        let bytes = Array(string.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

func printFlushed(_ text: String) {
    print(text)
    fflush(nil)
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Broker connection, buffer depth and oldest unsent age, lost readings, devices, adapter, serial ports.",
        discussion: "Works without a running agent (from the state directory), then says so.")
    @OptionGroup var options: ConfigOptions
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await withSession(options, standalone: true) { s in
            let r = try await s.call("status")
            printFlushed(json ? r.text : TextRendering.status(r))
        }
    }
}

struct Devices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Paired and configured devices: patient, profile, serial, battery, last reading, link state, buffered and lost counts.")
    @OptionGroup var options: ConfigOptions
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await withSession(options, standalone: true) { s in
            let r = try await s.call("devices")
            printFlushed(json ? r.text : TextRendering.devices(r))
        }
    }
}

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Active clinical and technical alerts (issue 9, docs/alerts.md).",
        discussion: "Without a running agent: the alerts the last run left active (state_dir/alerts.json).")
    @OptionGroup var options: ConfigOptions
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await withSession(options, standalone: true) { s in
            let r = try await s.call("alerts")
            printFlushed(json ? r.text : alertsText(r))
        }
    }

    func alertsText(_ r: JSONValue) -> String {
        let list = r["alerts"]?.arrayValue ?? []
        var out = ""
        if r["enabled"]?.boolValue == false { out += "alerts are not enabled (alerts.enabled in the configuration)\n" }
        if r["daemon"]?.boolValue == false { out += "agent not running: alerts active when it stopped\n" }
        if list.isEmpty { return out + "no active alerts" }
        func s(_ v: JSONValue?) -> String { v?.stringValue ?? "-" }
        let rows = list.map { a in
            [s(a["alert_id"]), s(a["rule"]), s(a["kind"]), s(a["severity"]), s(a["patient"]), s(a["device_id"]),
             s(a["raised_at"]), s(a["summary"])]
        }
        return out + TextRendering.table(["ALERT", "RULE", "KIND", "SEVERITY", "PATIENT", "DEVICE", "RAISED", "CONDITION"], rows)
    }
}

struct Assign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bind a device to another patient (audited). Works without a running agent.")
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Device id (see `iomt-agent devices`) or Bluetooth address.") var device: String
    @Option(name: .long, help: "The patient id its readings will carry.") var patient: String
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await withSession(options, standalone: true) { s in
            let r = try await s.call("assign", .obj(["device": .string(device), "patient": .string(patient)]))
            printFlushed(json ? r.text : "\(r["device"]?.stringValue ?? device): patient \(r["patient_before"]?.stringValue ?? "-") → \(patient)")
        }
    }
}

struct Discharge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unbind a device (or every device of a patient) and delete its Bluetooth bond.",
        discussion: """
            Refused while the buffer still holds readings of those devices, unless --export FILE wrote them \
            to a file first (they are still delivered) or --force --reason TEXT is given (audited).
            """)
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Device id or Bluetooth address.") var device: String?
    @Option(name: .long, help: "Discharge every device bound to this patient.") var patient: String?
    @Option(name: .long, help: "First write the buffered readings of these devices to FILE (JSON lines).") var export: String?
    @Flag(name: .long, help: "Discharge although readings are still buffered (needs --reason).") var force = false
    @Option(name: .long, help: "Why --force was needed (written to the audit log).") var reason: String?
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func validate() throws {
        if (device == nil) == (patient == nil) { throw ValidationError("give either DEVICE or --patient ID") }
        if force, (reason ?? "").isEmpty { throw ValidationError("--force needs --reason TEXT") }
    }

    func run() async throws {
        try await withSession(options, standalone: false) { s in
            var args: [JSONValue.Member] = []
            if let device { args.append(.init("device", .string(device))) }
            if let patient { args.append(.init("patient", .string(patient))) }
            if force { args += [.init("force", .bool(true)), .init("reason", .opt(reason))] }
            if let export {
                let list = try await s.call("devices")["devices"]?.arrayValue ?? []
                let ids = list.filter { d in
                    if let device { return d["id"]?.stringValue == device || d["address"]?.stringValue?.uppercased() == device.uppercased() }
                    return d["patient_id"]?.stringValue == patient && d["binding"]?.stringValue != "agent.yaml"
                }.compactMap { $0["id"]?.stringValue }
                let (count, through) = try await s.exportBuffer(to: export, devices: ids)
                printFlushed("exported \(count) buffered message(s) to \(export)")
                args.append(.init("exported", .obj(["file": .string(export), "count": .int(Int64(count)), "through_row": .int(through)])))
            }
            let r = try await s.call("discharge", .object(args))
            if json { printFlushed(r.text); return }
            for d in r["discharged"]?.arrayValue ?? [] {
                printFlushed("discharged \(d["id"]?.stringValue ?? d["device"]?.stringValue ?? "?") (patient \(d["patient_id"]?.stringValue ?? "?")); bond \(d["bond"]?.stringValue ?? "-")")
            }
            if let note = r["note"]?.stringValue { printFlushed(note) }
        }
    }
}

struct Buffer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The durable buffer, for support and audits.", subcommands: [Stats.self, Export.self, Purge.self])

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counts, sizes, the oldest unsent age, losses. Works without a running agent.")
        @OptionGroup var options: ConfigOptions
        @Flag(name: .long, help: "Print the result as JSON.") var json = false
        func run() async throws {
            try await withSession(options, standalone: true) { s in
                let r = try await s.call("buffer.stats")
                printFlushed(json ? r.text : TextRendering.bufferStats(r))
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write every buffered message to a JSON-lines file without deleting it. Works without a running agent.")
        @OptionGroup var options: ConfigOptions
        @Option(name: .long, help: "The file to create (must not exist; mode 0600).") var out: String
        func run() async throws {
            try await withSession(options, standalone: true) { s in
                let (count, _) = try await s.exportBuffer(to: out)
                printFlushed("exported \(count) buffered message(s) to \(out)")
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete every buffered reading; each is counted as lost, announced by a gap record and audited.")
        @OptionGroup var options: ConfigOptions
        @Flag(name: .long, help: "Required: you mean it.") var confirm = false
        @Flag(name: .long, help: "Print the result as JSON.") var json = false
        func validate() throws {
            if !confirm { throw ValidationError("purge deletes every buffered reading; repeat with --confirm") }
        }
        func run() async throws {
            try await withSession(options, standalone: false) { s in
                let r = try await s.call("buffer.purge", .obj(["confirm": .bool(true)]))
                printFlushed(json ? r.text : "purged \(r["purged"]?.intValue ?? 0) reading(s) (counted as lost, gap records follow); \(r["left_in_flight"]?.intValue ?? 0) in flight left to finish")
            }
        }
    }
}

struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live table of nearby Bluetooth LE devices: address, name, RSSI, services, profile, paired.")
    @OptionGroup var options: ConfigOptions
    @Option(name: .long, help: "How long to scan (1-300).") var seconds = 10
    @Flag(name: .long, help: "One JSON object per line, for scripts.") var json = false

    func run() async throws {
        try await withSession(options, standalone: false) { s in
            var headerShown = false
            let r = try await s.call("scan", .obj(["seconds": .int(Int64(seconds))]), onEvent: { e in
                if json { printFlushed(e.text) } else {
                    if !headerShown { printFlushed(TextRendering.scanLine(TextRendering.scanHeaders)) }
                    headerShown = true
                    printFlushed(TextRendering.scanLine(TextRendering.scanCells(ScanRow(json: e))))
                }
            })
            if !json { printFlushed("\(r["seen"]?.intValue ?? 0) advertisement(s)") }
        }
    }
}

struct Pair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect, pair and bond a device, read its information, bind it to a patient (audited).",
        discussion: "Prompts for a passkey or a numeric-comparison confirmation when the device asks; --passkey for scripts.")
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Bluetooth address, AA:BB:CC:DD:EE:FF.") var address: String
    @Option(name: .long, help: "The patient id its readings will carry.") var patient: String
    @Option(name: .long, help: "Profile to use (default: from the advertised services).") var profile: String?
    @Option(name: .long, help: "The 6-digit passkey, instead of a prompt.") var passkey: Int?
    @Flag(name: .long, help: "Print the result as JSON.") var json = false

    func run() async throws {
        try await withSession(options, standalone: false) { s in
            var args: [JSONValue.Member] = [.init("address", .string(address)), .init("patient", .string(patient))]
            if let profile { args.append(.init("profile", .string(profile))) }
            if let passkey { args.append(.init("passkey", .int(Int64(passkey)))) }
            let r = try await s.call("pair", .object(args), onEvent: { e in
                if let text = e["text"]?.stringValue { printFlushed(text) }
                else if let stage = e["stage"]?.stringValue { printFlushed("\(stage) \(e["address"]?.stringValue ?? "")...") }
            }, onPrompt: { p in
                print("\(p.text): ", terminator: "")
                fflush(nil)
                let line = (readLine() ?? "").trimmingCharacters(in: " ")
                if p.kind == "confirm" { return .bool(["y", "yes", "j", "ja", "o", "oui"].contains(line.lowercased())) }
                return .string(line)
            })
            if json { printFlushed(r.text); return }
            printFlushed("paired \(r["id"]?.stringValue ?? address) (\(r["profile"]?.stringValue ?? "?")) for patient \(patient)")
            printFlushed(r["first_reading_at"]?.stringValue.map { "first reading at \($0)" } ?? "no reading yet: check `iomt-agent devices` in a minute")
        }
    }
}

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Device simulators, for integrators without hardware.", subcommands: [Serial.self, Readings.self])

    struct Serial: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Play a serial medical device on a pseudo-terminal and print its path (until Ctrl-C).")
        @Option(name: .long, help: "contec-cms50-legacy, contec-cms50-v7, nonin-df2 or masimo-ascii1.") var profile: String
        @Option(name: .long, help: "Also create this symlink to the pseudo-terminal.") var link: String?
        @Option(name: .long, help: "Stop after this many seconds.") var seconds: Int?

        func run() async throws {
            let player: SimulatedSerialDevice
            do { player = try Simulation.serial(profile: profile, link: link) } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
            printFlushed(player.path)
            if let seconds {
                try await Task.sleep(for: .seconds(seconds))
            } else {
                let group = ServiceGroup(configuration: .init(services: [.init(service: WaitForSignal())],
                                                              gracefulShutdownSignals: [.sigterm, .sigint], logger: makeLogger(level: .warning)))
                try await group.run()
            }
            player.stop()
            if let link { unlink(link) }
        }
    }

    struct Readings: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print normalized readings (iomt-reading/1 JSON lines) of a simulated device.")
        @Option(name: .long, help: "pulse-oximeter, blood-pressure or thermometer.") var profile: String
        @Option(name: .long, help: "How many readings.") var count = 10
        @Option(name: .long, help: "Readings per second (spacing of their times).") var rate = 1.0
        @Option(name: .long, help: "Patient id they carry.") var patient = "P-SIM-1"
        @Option(name: .long, help: "Seed for the values.") var seed: UInt64 = 1

        func run() async throws {
            do {
                for line in try Simulation.readings(profile: profile, count: count, rate: rate, patient: patient, seed: seed) {
                    print(line)
                }
                fflush(nil)
            } catch {
                printError("\(error)")
                throw ExitCode(1)
            }
        }
    }
}

struct WaitForSignal: Service {
    func run() async throws {
        try? await gracefulShutdown()
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c || s.first == "\t" { s = s.dropFirst() }
        while s.last == c || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
