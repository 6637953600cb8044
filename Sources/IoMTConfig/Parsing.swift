import Yams

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
        var reader = ConfigReader(source: source)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml, .default, .default, .utf8)
        } catch let error as YamlError {
            throw ConfigErrors([reader.syntaxProblem(error, yaml: yaml)])
        } catch {
            throw ConfigErrors([ConfigProblem(source: source, line: nil, keyPath: "",
                                              message: "cannot parse the YAML")])
        }
        let config = reader.build(root)
        if let config, reader.problems.isEmpty { return config }
        if reader.problems.isEmpty {
            reader.problems.append(ConfigProblem(source: source, line: nil, keyPath: "",
                                                 message: "invalid configuration"))
        }
        throw ConfigErrors(reader.problems)
    }
}

/// The keys each mapping accepts, in the order the documentation lists them.
enum Keys {
    static let top = ["gateway", "state_dir", "log", "broker", "buffer", "output", "simulators"]
    static let gateway = ["id"]
    static let log = ["level"]
    static let broker = ["url", "client_id", "protocol", "username", "password_file", "ca_file",
                         "cert_file", "key_file", "qos", "topic_prefix", "keepalive_s",
                         "session_expiry_s", "inflight_window", "reconnect_min_ms",
                         "reconnect_max_ms", "status_interval_s"]
    static let buffer = ["max_bytes", "on_full", "order", "backlog_share", "commit_max_delay_ms",
                         "commit_max_batch"]
    static let output = ["format"]
    static let simulator = ["profile", "patient", "rate", "count", "id", "seed"]

    /// Every known key path, for "did you mean" across sections.
    static let allPaths: [String] = top
        + gateway.map { "gateway.\($0)" } + log.map { "log.\($0)" } + broker.map { "broker.\($0)" }
        + buffer.map { "buffer.\($0)" } + output.map { "output.\($0)" }
        + simulator.map { "simulators[].\($0)" }
}

/// A mapping whose keys have been checked: known keys with their value nodes.
struct Section {
    /// Key path of the mapping ("" for the top level).
    var path: String
    /// Line of the mapping (where missing keys are reported).
    var line: Int
    var values: [String: Node] = [:]
    /// Line of each key (problems about a value are reported where its key is).
    var keyLines: [String: Int] = [:]

    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

/// Walks the node tree, collecting problems.
struct ConfigReader {
    let source: String
    var problems: [ConfigProblem] = []

    init(source: String) { self.source = source }

    mutating func report(_ keyPath: String, _ line: Int?, _ message: String) {
        problems.append(ConfigProblem(source: source, line: line, keyPath: keyPath, message: message))
    }

    // MARK: Syntax errors

    func syntaxProblem(_ error: YamlError, yaml: String) -> ConfigProblem {
        // Never use `error.description`: it quotes the offending line (or, for duplicate
        // keys, the whole document), which may hold a secret.
        func problem(_ mark: Mark, _ text: String, _ context: YamlError.Context?) -> ConfigProblem {
            var message = "YAML syntax error: \(text)"
            if let context { message += " (\(context.text), line \(context.mark.line))" }
            return ConfigProblem(source: source, line: mark.line, column: mark.column, keyPath: "", message: message)
        }
        switch error {
        case let .scanner(context, text, mark, _), let .parser(context, text, mark, _):
            return problem(mark, text, context)
        case let .composer(context, text, mark, _):
            // `compose` reports a second document with a context placed at 1:1; keep the text only.
            if text == "but found another document" {
                return ConfigProblem(source: source, line: mark.line, column: mark.column, keyPath: "",
                                     message: "YAML syntax error: a second document ('---') is not allowed; the configuration is one document")
            }
            return problem(mark, text, context)
        case let .reader(text, offset, _, _):
            var line: Int? = nil
            var column: Int? = nil
            if let offset {
                var l = 1, c = 1
                for ch in yaml.prefix(offset) {
                    if ch == "\n" || ch == "\r\n" { l += 1; c = 1 } else { c += 1 }
                }
                line = l
                column = c
            }
            return ConfigProblem(source: source, line: line, column: column, keyPath: "",
                                 message: "cannot read the YAML text: \(text)")
        case let .duplicatedKeysInMapping(duplicates, context):
            let names = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return ConfigProblem(source: source, line: context.mark.line, column: context.mark.column, keyPath: "",
                                 message: "YAML error: key \(names) appears more than once in the same mapping (first here)")
        default:
            return ConfigProblem(source: source, line: nil, keyPath: "", message: "cannot parse the YAML")
        }
    }

    // MARK: Structure

    /// Checks that `node` is a mapping with only `keys`; reports unknown keys. An absent or
    /// empty node is an empty section (everything default). Nil if the node is not a mapping.
    mutating func section(_ node: Node?, path: String, parentLine: Int, keys: [String]) -> Section? {
        guard let node, !isNull(node) else {
            return Section(path: path, line: parentLine)
        }
        guard case let .mapping(mapping) = node else {
            if path.isEmpty {
                report("", parentLine,
                       "the configuration must be a mapping of keys (gateway:, broker:, ...), got \(describe(node))")
            } else {
                report(path, parentLine, "must be a mapping (indented 'key: value' lines), got \(describe(node))")
            }
            return nil
        }
        var section = Section(path: path, line: parentLine)
        for (keyNode, value) in mapping {
            let keyLine = line(keyNode, section.line)
            guard case let .scalar(scalar) = keyNode else {
                report(path, keyLine, "keys must be plain names, got \(describe(keyNode))")
                continue
            }
            let key = scalar.string
            if keys.contains(key) {
                section.values[key] = value
                section.keyLines[key] = keyLine
            } else {
                report(section.path(key), keyLine, unknownKeyMessage(key, in: path, allowed: keys))
            }
        }
        return section
    }

    func unknownKeyMessage(_ key: String, in path: String, allowed: [String]) -> String {
        let lower = key.lowercased()
        if ["password", "passwd", "pass", "secret", "token", "pwd"].contains(where: { lower.contains($0) }) {
            return "unknown key; secrets do not belong in the configuration file: write the password to a file only the agent can read and set broker.password_file to its path"
        }
        if key == "<<" {
            return "YAML merge keys ('<<') are not supported; write the keys out"
        }
        if let near = closest(key, among: allowed) {
            return "unknown key (did you mean '\(near)'?)"
        }
        // A key that belongs to another section.
        let here = path.hasPrefix("simulators[") ? "simulators[]" : path
        let elsewhere = Keys.allPaths.filter { candidate in
            let last = candidate.split(separator: ".").last.map(String.init) ?? candidate
            let parent = candidate.count > last.count ? String(candidate.dropLast(last.count + 1)) : ""
            return parent != here && normalized(last) == normalized(key)
        }
        if let other = elsewhere.first {
            return "unknown key here (did you mean '\(other)'?)"
        }
        return "unknown key (known keys: \(allowed.joined(separator: ", ")))"
    }

    // MARK: Scalars

    func line(_ node: Node?, _ fallback: Int) -> Int { node?.mark?.line ?? fallback }

    /// The line of `key` in `s`, or of the mapping if the key is absent.
    func line(_ s: Section, _ key: String) -> Int { s.keyLines[key] ?? s.line }

    func isNull(_ node: Node) -> Bool {
        guard case let .scalar(s) = node, s.style == .plain || s.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// The value node for `key`, nil if absent or null.
    func value(_ s: Section, _ key: String) -> Node? {
        guard let node = s.values[key], !isNull(node) else { return nil }
        return node
    }

    /// Describes a node for "got ..." without trusting it to be short.
    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case let .scalar(s):
            if isNull(node) { return "an empty value" }
            let text = clip(s.string)
            if s.style == .plain || s.style == .any {
                if isBoolWord(s.string) { return "a boolean (\(text))" }
                if parseInteger(s.string) != nil || parseNumber(s.string) != nil { return "a number (\(text))" }
            }
            return "a string (\"\(text)\")"
        }
    }

    /// A scalar's text, reporting a type error for mappings and lists.
    mutating func text(_ s: Section, _ key: String) -> (String, Int)? {
        guard let node = value(s, key) else { return nil }
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line(s, key), "must be a single value, got \(describe(node))")
            return nil
        }
        return (scalar.string, line(s, key))
    }

    /// A required, non-empty string.
    mutating func requiredText(_ s: Section, _ key: String, example: String) -> (String, Int)? {
        guard s.values[key].map({ !isNull($0) }) ?? false else {
            report(s.path(key), line(s, key), "is required (e.g. \(key): \(example))")
            return nil
        }
        guard let (value, line) = text(s, key) else { return nil }
        guard !value.isEmpty else {
            report(s.path(key), line, "must not be empty")
            return nil
        }
        return (value, line)
    }

    /// An optional non-empty string without control characters (paths, names).
    mutating func optionalText(_ s: Section, _ key: String) -> (String, Int)? {
        guard let (value, line) = text(s, key) else { return nil }
        if value.isEmpty {
            report(s.path(key), line, "must not be empty (leave the key out instead)")
            return nil
        }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            report(s.path(key), line, "must not contain control characters")
            return nil
        }
        return (value, line)
    }

    /// A file path for a secret or key material. Refused without echoing the value if it does
    /// not look like a path (someone pasted the password or PEM text itself).
    mutating func filePath(_ s: Section, _ key: String, example: String) -> (String, Int)? {
        guard let node = value(s, key) else { return nil }
        let line = line(s, key)
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line, "must be a file path (e.g. \(example)), got \(node.isMappingOrSequence ? describe(node) : "something else")")
            return nil
        }
        let text = scalar.string
        if text.isEmpty {
            report(s.path(key), line, "must not be empty (leave the key out instead)")
            return nil
        }
        if !text.contains("/") || text.contains("-----BEGIN")
            || text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            // Not echoed: this may be the secret itself.
            report(s.path(key), line,
                   "must be the path of a file (e.g. \(example), or ./name for the working directory), not its contents; the value is not shown")
            return nil
        }
        return (text, line)
    }

    /// An integer in `range`; `default` when absent. Quoted numbers are strings, not integers.
    mutating func integer(_ s: Section, _ key: String, _ range: ClosedRange<Int64>, default def: Int64,
                          rangeMessage: String? = nil) -> (Int64, Int?) {
        guard let node = value(s, key) else { return (def, nil) }
        let line = line(s, key)
        guard case let .scalar(scalar) = node, scalar.style == .plain || scalar.style == .any,
              let parsed = parseInteger(scalar.string) else {
            report(s.path(key), line, "must be an integer, got \(describe(node))")
            return (def, line)
        }
        guard let v = parsed.int64, range.contains(v) else {
            report(s.path(key), line,
                   "\(rangeMessage ?? "must be between \(range.lowerBound) and \(range.upperBound)"), got \(clip(scalar.string))")
            return (def, line)
        }
        return (v, line)
    }

    /// A finite number (integer or decimal) in `range`, or nil if absent.
    mutating func number(_ s: Section, _ key: String, _ check: (Double) -> Bool, rangeMessage: String) -> (Double, Int)? {
        guard let node = value(s, key) else { return nil }
        let line = line(s, key)
        guard case let .scalar(scalar) = node, scalar.style == .plain || scalar.style == .any,
              let v = parseNumber(scalar.string) else {
            report(s.path(key), line, "must be a number, got \(describe(node))")
            return nil
        }
        guard check(v) else {
            report(s.path(key), line, "\(rangeMessage), got \(clip(scalar.string))")
            return nil
        }
        return (v, line)
    }

    /// One of an enum's raw values; `default` when absent.
    mutating func choice<E: CaseIterable & RawRepresentable>(_ s: Section, _ key: String, default def: E?) -> E?
    where E.RawValue == String {
        guard let node = value(s, key) else { return def }
        let names = E.allCases.map(\.rawValue)
        guard case let .scalar(scalar) = node else {
            report(s.path(key), line(s, key), "must be one of \(names.joined(separator: ", ")), got \(describe(node))")
            return nil
        }
        if let v = E(rawValue: scalar.string) { return v }
        var message = "must be one of \(names.joined(separator: ", ")), got \(describe(node))"
        if let near = closest(scalar.string, among: names) { message += " (did you mean '\(near)'?)" }
        report(s.path(key), line(s, key), message)
        return nil
    }

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
        if let o = section(top.values["output"], path: "output", parentLine: line(top, "output"), keys: Keys.output),
           let (name, line) = text(o, "format") {
            let format = OutputFormat(rawValue: name)
            if OutputFormat.known.contains(format) {
                output.format = format
            } else {
                report("output.format", line, "must be json (the only format so far), got \"\(clip(name))\"")
            }
        }

        let simulators = buildSimulators(top)

        guard let gatewayID, let broker, let buffer, let simulators else { return nil }
        return AgentConfig(gateway: .init(id: gatewayID), stateDir: stateDir, log: log, broker: broker,
                           buffer: buffer, output: output, simulators: simulators)
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
                let itemLine = line(item, b.line)
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
            let profile: SimulatorProfile?
            if value(s, "profile") == nil {
                let names = SimulatorProfile.allCases.map(\.rawValue).joined(separator: ", ")
                report(s.path("profile"), line(s, "profile"), "is required (one of \(names))")
                profile = nil
            } else {
                profile = choice(s, "profile", default: nil)
            }
            var patient: String?
            if let (p, line) = requiredText(s, "patient", example: "P-1001") {
                if p.utf8.count > 64 || p.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    report(s.path("patient"), line, "must be at most 64 bytes without control characters")
                } else {
                    patient = p
                }
            }
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
                if case let .scalar(scalar) = seedNode, scalar.style == .plain || scalar.style == .any,
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
            guard problems.count == before, let profile, let patient, let rate, let id else {
                ok = false
                continue
            }
            result.append(.init(id: id, profile: profile, patient: patient, rate: rate, count: count, seed: seed))
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

// MARK: - Helpers

extension Node {
    var isMappingOrSequence: Bool {
        switch self {
        case .mapping, .sequence: true
        default: false
        }
    }
}

/// A parsed integer: sign and magnitude (nil magnitude: too large for UInt64).
struct ParsedInteger {
    var negative: Bool
    var magnitude: UInt64?

    var int64: Int64? {
        guard let magnitude else { return nil }
        if negative {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }
}

/// A decimal integer, optionally signed, `_` allowed between digits (`86_400`).
func parseInteger(_ text: String) -> ParsedInteger? {
    var s = Substring(text)
    var negative = false
    if let c = s.first, c == "+" || c == "-" {
        negative = c == "-"
        s = s.dropFirst()
    }
    guard let first = s.first, first.isASCII, first.isNumber, s.last != "_" else { return nil }
    var value: UInt64? = 0
    for c in s.utf8 {
        if c == UInt8(ascii: "_") { continue }
        guard c >= 0x30, c <= 0x39 else { return nil }
        if let v = value {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            value = o1 || o2 ? nil : a
        }
    }
    return ParsedInteger(negative: negative, magnitude: value)
}

/// A finite decimal number (`1`, `0.25`, `1e3`), `_` allowed. No inf, nan or hex.
func parseNumber(_ text: String) -> Double? {
    let cleaned = text.filter { $0 != "_" }
    guard !cleaned.isEmpty,
          cleaned.allSatisfy({ ($0.isASCII && $0.isNumber) || "+-.eE".contains($0) }),
          let v = Double(cleaned), v.isFinite else { return nil }
    return v
}

func isBoolWord(_ s: String) -> Bool {
    ["true", "false", "yes", "no", "on", "off", "y", "n"].contains(s.lowercased())
}

/// At most 40 characters of `s`, for echoing a (non-secret) value in a message.
func clip(_ s: String) -> String {
    let oneLine = String(s.map { $0.isNewline ? " " : $0 })
    return oneLine.count <= 40 ? oneLine : String(oneLine.prefix(37)) + "..."
}

/// Lower-cased, without `_` and `-`, for loose key comparison (`clientId` ~ `client_id`).
func normalized(_ s: String) -> String {
    String(s.lowercased().filter { $0 != "_" && $0 != "-" })
}

/// The candidate nearest to `word` if it is plausibly a typo of it.
func closest(_ word: String, among candidates: [String]) -> String? {
    if let exact = candidates.first(where: { normalized($0) == normalized(word) }) { return exact }
    let lowered = word.lowercased()
    if lowered.count >= 3, let prefixed = candidates.first(where: { $0.lowercased().hasPrefix(lowered) }) {
        return prefixed
    }
    let limit = word.count >= 6 ? 2 : 1
    var best: (String, Int)?
    for c in candidates {
        let d = editDistance(word.lowercased(), c.lowercased())
        if d <= limit, d < (best?.1 ?? Int.max) { best = (c, d) }
    }
    return best?.0
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a), y = Array(b)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
    for i in 0...x.count { d[i][0] = i }
    for j in 0...y.count { d[0][j] = j }
    for i in 1...x.count {
        for j in 1...y.count {
            let cost = x[i - 1] == y[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[x.count][y.count]
}
