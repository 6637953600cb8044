import IoMTYAML

extension AgentConfig {
    /// Parses and validates a configuration.
    ///
    /// - Parameters:
    ///   - yaml: the YAML text.
    ///   - source: names the text in error messages (usually the file path).
    /// - Throws: ``ConfigErrors`` listing every problem found (unknown keys, wrong types,
    ///   values out of range, malformed URLs, missing required keys, YAML syntax errors),
    ///   each with its key path and line.
    public static func parse(yaml: String, source: String) throws(ConfigErrors) -> AgentConfig {
        try ConfigReader.read(yaml: yaml, source: source, what: "configuration") { $0.build($1) }
    }
}

/// The keys each mapping accepts, in the order the documentation lists them.
enum Keys {
    static let top = ["gateway", "state_dir", "log", "broker", "buffer", "output", "simulators", "serial", "bluetooth", "control", "security", "alerts"]
    static let security = ["key_file"]
    static let control = ["socket", "group"]
    static let gateway = ["id"]
    static let log = ["level"]
    static let broker = ["url", "client_id", "protocol", "username", "password_file", "ca_file",
                         "cert_file", "key_file", "qos", "topic_prefix", "keepalive_s",
                         "session_expiry_s", "inflight_window", "reconnect_min_ms",
                         "reconnect_max_ms", "status_interval_s"]
    static let buffer = ["max_bytes", "on_full", "order", "backlog_share", "commit_max_delay_ms",
                         "commit_max_batch"]
    static let output = ["format", "patient_pseudonym_key_file", "units"]
    static let simulator = ["profile", "patient", "rate", "count", "id", "seed", "episode"]
    static let simulatorEpisode = ["after_s", "duration_s", "spo2", "alternate_s"]
    static let serial = ["profile", "patient", "port", "match", "id", "baud", "data_bits", "parity", "stop_bits",
                         "rtscts", "reconnect_min_ms", "reconnect_max_ms", "line_profile"]
    static let serialMatch = ["vendor_id", "product_id", "serial"]

    /// Every key name of the configuration and of line profiles (safe to show in messages).
    static let allNames: Set<String> = Set(top + gateway + log + broker + buffer + output + simulator + serial + control
        + security + serialMatch + BluetoothKeys.section + BluetoothKeys.device + lineProfile + lineProfileLine + lineProfileMeasurement
        + lineProfileFlags + lineProfileBit + BluetoothKeys.broadcaster + advertisementProfile + advertisementSource
        + advertisementCondition + advertisementField + AlertKeys.section + AlertKeys.hook + AlertKeys.rule + simulatorEpisode)

    /// Every known key path, for "did you mean" across sections.
    static let allPaths: [String] = top
        + gateway.map { "gateway.\($0)" } + log.map { "log.\($0)" } + broker.map { "broker.\($0)" }
        + buffer.map { "buffer.\($0)" } + output.map { "output.\($0)" } + control.map { "control.\($0)" }
        + simulator.map { "simulators[].\($0)" }
        + serial.map { "serial[].\($0)" } + serialMatch.map { "serial[].match.\($0)" }
        + BluetoothKeys.section.map { "bluetooth.\($0)" } + BluetoothKeys.device.map { "bluetooth.devices[].\($0)" }
        + BluetoothKeys.broadcaster.map { "bluetooth.broadcasters[].\($0)" }
        + AlertKeys.section.map { "alerts.\($0)" } + AlertKeys.hook.map { "alerts.hook.\($0)" }
        + AlertKeys.rule.map { "alerts.rules[].\($0)" }
}

/// The configuration-specific rules: which keys exist, their types, ranges and defaults.
extension ConfigReader {
    // MARK: The configuration

    mutating func build(_ root: Node?) -> AgentConfig? {
        guard let top = section(root, path: "", parentLine: 1, keys: Keys.top) else { return nil }

        // gateway
        var gatewayID: String?
        if let gw = section(top.values["gateway"], path: "gateway", parentLine: line(top, "gateway"), keys: Keys.gateway) {
            if let (id, line) = requiredText(gw, "id", example: "hub-001") {
                if let problem = identifierProblem(id, maxLength: 64) {
                    report("gateway.id", line, problem)
                } else {
                    gatewayID = id
                }
            }
        }

        // state_dir
        let stateDir = optionalText(top, "state_dir")?.0 ?? AgentConfig.defaultStateDir

        // log
        var log = AgentConfig.Log()
        if let l = section(top.values["log"], path: "log", parentLine: line(top, "log"), keys: Keys.log) {
            log.level = choice(l, "level", default: log.level) ?? log.level
        }

        let broker = buildBroker(top, gatewayID: gatewayID ?? "")
        let buffer = buildBuffer(top)

        // output
        var output = AgentConfig.Output()
        if let o = section(top.values["output"], path: "output", parentLine: line(top, "output"), keys: Keys.output) {
            if let (name, line) = text(o, "format") {
                let format = OutputFormat(rawValue: name)
                if OutputFormat.known.contains(format) {
                    output.format = format
                } else {
                    report("output.format", line, "must be json or fhir, got \"\(clip(name))\"")
                }
            }
            if let node = value(o, "units") {
                let l = line(o, "units")
                if case let .sequence(seq) = node {
                    var units: [String] = []
                    for item in seq {
                        guard case let .scalar(u) = item else {
                            report("output.units", l, "must be a list of UCUM units, got \(describe(item)) in it")
                            continue
                        }
                        let known = AgentConfig.Output.convertibleUnits.flatMap { $0 }
                        if !known.contains(u.string) {
                            report("output.units", u.mark.line, "\"\(clip(u.string))\" is not a unit the agent converts to (one of \(known.joined(separator: ", ")))")
                        } else if let group = AgentConfig.Output.convertibleUnits.first(where: { $0.contains(u.string) }),
                                  let other = units.first(where: { group.contains($0) }) {
                            report("output.units", u.mark.line, "\(u.string) and \(other) are the same quantity; name one")
                        } else {
                            units.append(u.string)
                        }
                    }
                    output.units = units
                } else {
                    report("output.units", l, "must be a list of UCUM units, e.g. [mm[Hg], Cel], got \(describe(node))")
                }
            }
            if let (path, line) = optionalText(o, "patient_pseudonym_key_file") {
                if path.hasPrefix("/") { output.patientPseudonymKeyFile = path } else {
                    report("output.patient_pseudonym_key_file", line, "must be an absolute path, got \"\(clip(path))\"")
                }
            }
        }

        let simulators = buildSimulators(top)
        let serial = buildSerial(top, simulatorIDs: simulators.map { Set($0.map(\.id)) } ?? [])

        let otherIDs = Set((simulators ?? []).map(\.id) + (serial ?? []).map(\.id))
        let bluetooth = buildBluetooth(top, otherIDs: otherIDs)

        // control
        var control = AgentConfig.Control()
        if let c = section(top.values["control"], path: "control", parentLine: line(top, "control"), keys: Keys.control) {
            if let (socket, line) = text(c, "socket") {
                if !socket.hasPrefix("/") {
                    report("control.socket", line, "must be an absolute path, got \"\(clip(socket))\"")
                } else if socket.utf8.count > 107 {
                    report("control.socket", line, "must be at most 107 bytes long (a Unix socket path), got \(socket.utf8.count)")
                } else {
                    control.socket = socket
                }
            }
            if let (group, line) = text(c, "group") {
                if let problem = identifierProblem(group, maxLength: 32) {
                    report("control.group", line, problem)
                } else {
                    control.group = group
                }
            }
        }

        var securityKeyFile: String?
        if let sec = section(top.values["security"], path: "security", parentLine: line(top, "security"), keys: Keys.security),
           let (path, l) = optionalText(sec, "key_file") {
            if path.hasPrefix("/") { securityKeyFile = path } else {
                report("security.key_file", l, "must be an absolute path, got \"\(clip(path))\"")
            }
        }

        let alerts = buildAlerts(top)
        guard let gatewayID, let broker, let buffer, let simulators, let serial, let bluetooth, let alerts else { return nil }
        return AgentConfig(gateway: .init(id: gatewayID), stateDir: stateDir, log: log, broker: broker,
                           buffer: buffer, output: output, simulators: simulators, serial: serial, bluetooth: bluetooth,
                           control: control, securityKeyFile: securityKeyFile, alerts: alerts)
    }

    mutating func buildBroker(_ top: Section, gatewayID: String) -> AgentConfig.Broker? {
        guard let b = section(top.values["broker"], path: "broker", parentLine: line(top, "broker"), keys: Keys.broker) else {
            return nil
        }
        var ok = true
        // Defaults come from the memberwise initializer, the one place they are written down.
        let d = AgentConfig.Broker(endpoints: [], gatewayID: "")

        // url: one string or a list of them.
        var endpoints: [BrokerEndpoint] = []
        if let node = value(b, "url") {
            let items: [(Node, String)]
            switch node {
            case let .sequence(seq):
                items = seq.enumerated().map { ($0.element, "broker.url[\($0.offset)]") }
                if items.isEmpty {
                    report("broker.url", line(b, "url"), "must list at least one broker URL")
                    ok = false
                }
            default:
                items = [(node, "broker.url")]
            }
            for (item, path) in items {
                let itemLine = path == "broker.url" ? line(b, "url") : line(item, b.line)
                guard case let .scalar(scalar) = item, !isNull(item) else {
                    report(path, itemLine, "must be a URL like mqtt://127.0.0.1:1883, got \(describe(item))")
                    ok = false
                    continue
                }
                do {
                    let endpoint = try BrokerEndpoint(parsing: scalar.string)
                    if endpoints.contains(endpoint) {
                        report(path, itemLine, "\(endpoint) is listed twice")
                        ok = false
                    }
                    endpoints.append(endpoint)
                } catch {
                    report(path, itemLine, error.message)
                    ok = false
                }
            }
        } else {
            report("broker.url", line(b, "url"), "is required (e.g. url: mqtt://127.0.0.1:1883)")
            ok = false
        }
        let anyTLS = endpoints.contains { $0.tls }

        var clientID: String?
        if let (id, line) = optionalText(b, "client_id") {
            if id.utf8.count > 128 || id.contains(where: { $0 == " " || $0 == "\t" }) {
                report("broker.client_id", line, "must be at most 128 bytes without spaces")
                ok = false
            } else {
                clientID = id
            }
        }
        let protocolVersion: MQTTProtocolVersion? = choice(b, "protocol", default: d.protocolVersion)

        let username = optionalText(b, "username")
        let passwordFile = filePath(b, "password_file", example: "/etc/iomt-agent/broker.password")
        if let (_, line) = passwordFile, username == nil, b.values["username"].map(isNull) ?? true {
            report("broker.password_file", line, "requires broker.username (the password belongs to a user)")
            ok = false
        }
        let caFile = filePath(b, "ca_file", example: "/etc/iomt-agent/ca.pem")
        if let (_, line) = caFile, !endpoints.isEmpty, !anyTLS {
            report("broker.ca_file", line, "is only used with mqtts:// URLs, and broker.url has none")
            ok = false
        }
        let certFile = filePath(b, "cert_file", example: "/etc/iomt-agent/client.crt")
        let keyFile = filePath(b, "key_file", example: "/etc/iomt-agent/client.key")
        var clientCertificate: AgentConfig.ClientCertificate?
        switch (certFile, keyFile) {
        case let ((cert, certLine)?, (key, _)?):
            clientCertificate = .init(certFile: cert, keyFile: key)
            if !endpoints.isEmpty, !anyTLS {
                report("broker.cert_file", certLine, "mutual TLS is only used with mqtts:// URLs, and broker.url has none")
                ok = false
            }
        case let ((_, line)?, nil):
            report("broker.cert_file", line, "needs broker.key_file as well (mutual TLS uses both)")
            ok = false
        case let (nil, (_, line)?):
            report("broker.key_file", line, "needs broker.cert_file as well (mutual TLS uses both)")
            ok = false
        case (nil, nil):
            break
        }

        let (q, _) = integer(b, "qos", 1...2, default: Int64(d.qos.rawValue), rangeMessage: "must be 1 or 2")
        let qos = QoS(rawValue: Int(q)) ?? d.qos

        var topicPrefix: String?
        if let (prefix, line) = optionalText(b, "topic_prefix") {
            if let problem = topicPrefixProblem(prefix) {
                report("broker.topic_prefix", line, problem)
                ok = false
            } else {
                topicPrefix = prefix
            }
        }

        let keepAlive = integer(b, "keepalive_s", 5...3600, default: Int64(d.keepAliveSeconds)).0
        let sessionExpiry = integer(b, "session_expiry_s", 0...4_294_967_295, default: Int64(d.sessionExpirySeconds)).0
        let inflight = integer(b, "inflight_window", 1...65535, default: Int64(d.inflightWindow)).0
        let reconnectMin = integer(b, "reconnect_min_ms", 10...3_600_000, default: Int64(d.reconnectMinMilliseconds)).0
        let (reconnectMax, maxLine) = integer(b, "reconnect_max_ms", 10...3_600_000,
                                              default: Int64(d.reconnectMaxMilliseconds))
        if reconnectMax < reconnectMin {
            report("broker.reconnect_max_ms", maxLine ?? line(b, "reconnect_min_ms"),
                   "must be at least broker.reconnect_min_ms (\(reconnectMin)), got \(reconnectMax)")
            ok = false
        }
        let statusInterval = integer(b, "status_interval_s", 1...86400, default: Int64(d.statusIntervalSeconds)).0

        guard ok, let protocolVersion else { return nil }
        return AgentConfig.Broker(
            endpoints: endpoints, gatewayID: gatewayID, clientID: clientID, protocolVersion: protocolVersion,
            username: username?.0, passwordFile: passwordFile?.0, caFile: caFile?.0,
            clientCertificate: clientCertificate, qos: qos, topicPrefix: topicPrefix,
            keepAliveSeconds: Int(keepAlive), sessionExpirySeconds: UInt32(sessionExpiry),
            inflightWindow: Int(inflight), reconnectMinMilliseconds: Int(reconnectMin),
            reconnectMaxMilliseconds: Int(reconnectMax), statusIntervalSeconds: Int(statusInterval))
    }

    mutating func buildBuffer(_ top: Section) -> AgentConfig.Buffer? {
        guard let s = section(top.values["buffer"], path: "buffer", parentLine: line(top, "buffer"), keys: Keys.buffer) else {
            return nil
        }
        var buffer = AgentConfig.Buffer()
        if let node = value(s, "max_bytes") {
            let line = line(s, "max_bytes")
            let units = "units B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"
            var bytes: Int64?
            if case let .scalar(scalar) = node {
                bytes = ByteSize.parse(scalar.string)
            }
            if let bytes {
                if bytes < AgentConfig.Buffer.minimumMaxBytes {
                    report("buffer.max_bytes", line, "must be at least 64KiB, got \(ByteSize.format(bytes))")
                } else {
                    buffer.maxBytes = bytes
                }
            } else {
                report("buffer.max_bytes", line,
                       "must be a number of bytes or a size like 256MiB (\(units)), got \(describe(node))")
            }
        }
        buffer.onFull = choice(s, "on_full", default: buffer.onFull) ?? buffer.onFull
        buffer.order = choice(s, "order", default: buffer.order) ?? buffer.order
        if let (share, _) = number(s, "backlog_share", { $0 >= 0.05 && $0 <= 0.95 },
                                   rangeMessage: "must be between 0.05 and 0.95") {
            buffer.backlogShare = share
        }
        buffer.commitMaxDelayMilliseconds = Int(integer(s, "commit_max_delay_ms", 0...1000,
                                                        default: Int64(buffer.commitMaxDelayMilliseconds)).0)
        buffer.commitMaxBatch = Int(integer(s, "commit_max_batch", 1...10000, default: Int64(buffer.commitMaxBatch)).0)
        return buffer
    }

    mutating func buildSimulators(_ top: Section) -> [AgentConfig.Simulator]? {
        guard let node = value(top, "simulators") else { return [] }
        guard case let .sequence(seq) = node else {
            report("simulators", line(top, "simulators"), "must be a list ('- profile: ...' entries), got \(describe(node))")
            return nil
        }
        var result: [AgentConfig.Simulator] = []
        var seen: [String: String] = [:]  // id -> key path of its first user
        var ok = true
        for (index, item) in seq.enumerated() {
            let path = "simulators[\(index)]"
            guard let s = section(item, path: path, parentLine: line(item, line(top, "simulators")), keys: Keys.simulator) else {
                ok = false
                continue
            }
            if isNull(item) {
                report(path, s.line, "is empty (an entry needs at least profile, patient and rate)")
                ok = false
                continue
            }
            let before = problems.count
            let profile: SimulatorProfile? = requiredChoice(s, "profile")
            let patient = patientID(s)
            var rate: Double?
            if s.values["rate"].map({ !isNull($0) }) ?? false {
                rate = number(s, "rate", { $0 > 0 && $0 <= 1000 },
                              rangeMessage: "must be more than 0 and at most 1000 readings per second")?.0
            } else {
                report(s.path("rate"), line(s, "rate"), "is required (readings per second, e.g. rate: 1.0)")
            }
            var count: Int?
            if value(s, "count") != nil {
                count = Int(integer(s, "count", 1...Int64(Int.max), default: 1,
                                    rangeMessage: "must be at least 1").0)
            }
            var id: String?
            var idLine = s.line
            if let (explicit, line) = text(s, "id") {
                idLine = line
                if let problem = identifierProblem(explicit, maxLength: 64) {
                    report(s.path("id"), line, problem)
                } else {
                    id = explicit
                }
            } else if let profile {
                id = "sim-\(profile.rawValue)-\(index + 1)"
            }
            var seed = UInt64(index + 1)
            if let seedNode = value(s, "seed") {
                let line = line(s, "seed")
                if case let .scalar(scalar) = seedNode, scalar.style == .plain,
                   let parsed = parseInteger(scalar.string) {
                    if parsed.negative, parsed.magnitude != 0 {
                        report(s.path("seed"), line, "must not be negative, got \(clip(scalar.string))")
                    } else if let magnitude = parsed.magnitude {
                        seed = magnitude
                    } else {
                        report(s.path("seed"), line, "must be at most \(UInt64.max), got \(clip(scalar.string))")
                    }
                } else {
                    report(s.path("seed"), line, "must be an integer, got \(describe(seedNode))")
                }
            }
            if let id {
                if let first = seen[id] {
                    report(s.path("id"), idLine, "duplicate simulator id '\(id)' (also used by \(first))")
                } else {
                    seen[id] = path
                }
            }
            var episode: AgentConfig.Simulator.Episode?
            if let node = value(s, "episode"),
               let e = section(node, path: s.path("episode"), parentLine: line(s, "episode"), keys: Keys.simulatorEpisode) {
                if profile != nil, profile != .pulseOximeter {
                    report(s.path("episode"), line(s, "episode"), "only the pulse-oximeter simulator plays an episode")
                }
                let after = number(e, "after_s", { $0 >= 0 && $0 <= 86_400 }, rangeMessage: "must be between 0 and 86400")
                let duration = number(e, "duration_s", { $0 > 0 && $0 <= 86_400 }, rangeMessage: "must be more than 0 and at most 86400")
                let spo2 = number(e, "spo2", { $0 >= 0 && $0 <= 100 }, rangeMessage: "must be between 0 and 100")
                for (key, v) in [("after_s", after), ("duration_s", duration), ("spo2", spo2)] where v == nil && value(e, key) == nil {
                    report(e.path(key), line(e, key), "is required")
                }
                let alternate = number(e, "alternate_s", { $0 > 0 && $0 <= 3600 }, rangeMessage: "must be more than 0 and at most 3600")
                if let after, let duration, let spo2 {
                    episode = .init(afterSeconds: after.0, durationSeconds: duration.0, spo2: spo2.0, alternateSeconds: alternate?.0)
                }
            }
            guard problems.count == before, let profile, let patient, let rate, let id else {
                ok = false
                continue
            }
            result.append(.init(id: id, profile: profile, patient: patient, rate: rate, count: count, seed: seed, episode: episode))
        }
        return ok ? result : nil
    }

    // MARK: Value rules

    /// Why `s` is not a valid identifier (1...maxLength of `[A-Za-z0-9._-]`), or nil.
    func identifierProblem(_ s: String, maxLength: Int) -> String? {
        if s.isEmpty { return "must not be empty" }
        if s.utf8.count > maxLength { return "must be at most \(maxLength) characters, got \(s.count)" }
        let allowed = s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
        }
        if !allowed {
            return "may contain only letters A-Z a-z, digits, '.', '_' and '-', got \"\(clip(s))\""
        }
        return nil
    }

    /// Why `p` is not a valid MQTT topic prefix, or nil.
    func topicPrefixProblem(_ p: String) -> String? {
        if p.contains("+") || p.contains("#") {
            return "must not contain the MQTT wildcards '+' or '#', got \"\(clip(p))\""
        }
        if p.hasPrefix("/") || p.hasSuffix("/") {
            return "must not start or end with '/', got \"\(clip(p))\""
        }
        if p.contains("//") { return "must not contain an empty topic level ('//'), got \"\(clip(p))\"" }
        if p.hasPrefix("$") { return "must not start with '$' (reserved for broker topics such as $SYS)" }
        if p.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "must not contain control characters"
        }
        if p.utf8.count > 1024 { return "must be at most 1024 bytes" }
        return nil
    }
}
