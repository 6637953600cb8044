import IoMTCore
import IoMTYAML

extension AgentConfig {
    /// `alerts`: clinical and technical alerts raised at the edge (issue 9, docs/alerts.md).
    /// Off unless `enabled: true`.
    public struct Alerts: Sendable, Equatable {
        /// `alerts.enabled`. Default false: no rule is evaluated, nothing is published.
        public var enabled: Bool
        /// `alerts.defaults`: also apply the documented default rule set (docs/alerts.md). Default
        /// false. A rule in `rules` with a default's name and scope replaces that default.
        public var useDefaults: Bool
        /// `alerts.rules`: the configured rules.
        public var rules: [AlertRuleConfig]
        /// `alerts.qos`: QoS of alert messages. Default 1 (the broker's `qos` is not inherited:
        /// alerts may be sent with 2 while readings go with 1).
        public var qos: QoS
        /// `alerts.hook`: a local command run for every raise and clear (nil: none).
        public var hook: Hook?

        public init(enabled: Bool = false, useDefaults: Bool = false, rules: [AlertRuleConfig] = [],
                    qos: QoS = .atLeastOnce, hook: Hook? = nil) {
            self.enabled = enabled
            self.useDefaults = useDefaults
            self.rules = rules
            self.qos = qos
            self.hook = hook
        }

        /// `alerts.hook`: run `command` (argv, no shell) with the alert JSON on stdin.
        public struct Hook: Sendable, Equatable {
            /// `alerts.hook.command`: the program (an absolute path) and its arguments.
            public var command: [String]
            /// `alerts.hook.timeout_ms`: killed (SIGKILL) after this long. Default 5000.
            public var timeoutMilliseconds: Int
            public init(command: [String], timeoutMilliseconds: Int = 5000) {
                self.command = command
                self.timeoutMilliseconds = timeoutMilliseconds
            }
        }
    }

    /// One entry of `alerts.rules`.
    public struct AlertRuleConfig: Sendable, Equatable {
        /// Whom the rule applies to.
        public enum Scope: Sendable, Equatable {
            case all
            /// `profile:` a device profile.
            case profile(String)
            /// `patient:` a patient id (overrides a profile rule of the same name).
            case patient(String)
        }

        /// `type:` and its parameters.
        public enum Condition: Sendable, Equatable {
            /// `type: threshold`, `code`, one of `below|above|at_or_above|at_or_below`, `clear`.
            case threshold(code: MDCCode, direction: String, raise: Double, clear: Double)
            /// `type: rate`, `code`, `delta` (signed), `window_s`.
            case rate(code: MDCCode, delta: Double, windowMilliseconds: UInt64)
            /// `type: no-reading`, `after_s`.
            case noReading(afterMilliseconds: UInt64)
            /// `type: sensor-off`.
            case sensorOff
            /// `type: disconnected`, `after_s`.
            case disconnected(afterMilliseconds: UInt64)
            /// `type: battery-low`, `percent`, `clear` (default percent + 5).
            case batteryLow(percent: Double, clear: Double)
            /// `type: clock-drift`, `max_offset_s`.
            case clockDrift(maxOffsetMilliseconds: UInt64)
            /// `type: buffer-high`, `percent`, `clear` (default percent - 5).
            case bufferHigh(percent: Double, clear: Double)
            /// `type: broker-unreachable`, `after_s`.
            case brokerUnreachable(afterMilliseconds: UInt64)
        }

        /// `name`: `[a-z0-9-]`, 1-48 characters; a topic level and the override key.
        public var name: String
        public var scope: Scope
        public var condition: Condition
        /// `severity`: low, medium or high. Default medium.
        public var severity: String
        /// `for_s`: how long the condition must hold before the alert is raised. Default 0.
        public var raiseAfterMilliseconds: UInt64
        /// `clear_after_s`: how long the clear condition must hold. Default 0.
        public var clearAfterMilliseconds: UInt64

        public init(name: String, scope: Scope = .all, condition: Condition, severity: String = "medium",
                    raiseAfterMilliseconds: UInt64 = 0, clearAfterMilliseconds: UInt64 = 0) {
            self.name = name
            self.scope = scope
            self.condition = condition
            self.severity = severity
            self.raiseAfterMilliseconds = raiseAfterMilliseconds
            self.clearAfterMilliseconds = clearAfterMilliseconds
        }
    }
}

enum AlertKeys {
    static let section = ["enabled", "defaults", "rules", "qos", "hook"]
    static let hook = ["command", "timeout_ms"]
    static let rule = ["name", "type", "profile", "patient", "severity", "code", "below", "above", "at_or_above",
                       "at_or_below", "clear", "for_s", "clear_after_s", "delta", "window_s", "after_s", "percent",
                       "max_offset_s"]
    static let types = ["threshold", "rate", "no-reading", "sensor-off", "disconnected", "battery-low", "clock-drift",
                        "buffer-high", "broker-unreachable"]
    /// Which keys each type takes besides name, type, profile, patient, severity, for_s, clear_after_s.
    static let parameters: [String: Set<String>] = [
        "threshold": ["code", "below", "above", "at_or_above", "at_or_below", "clear"],
        "rate": ["code", "delta", "window_s"],
        "no-reading": ["after_s"],
        "sensor-off": [],
        "disconnected": ["after_s"],
        "battery-low": ["percent", "clear"],
        "clock-drift": ["max_offset_s"],
        "buffer-high": ["percent", "clear"],
        "broker-unreachable": ["after_s"],
    ]
    static let knownCodes: [MDCCode] = [
        .pulseOximetrySpO2, .pulseOximetryPulseRate, .pulseOximetryPerfusionIndex, .pulseRateNonInvasive, .heartRate,
        .systolic, .diastolic, .meanArterialPressure, .bodyTemperature, .bodyWeight, .respirationRate, .batteryCharge,
        .glucoseCapillaryWholeBlood, .glucoseCapillaryPlasma, .glucoseISF,
    ]
}

extension ConfigReader {
    mutating func buildAlerts(_ top: Section) -> AgentConfig.Alerts? {
        guard let s = section(top.values["alerts"], path: "alerts", parentLine: line(top, "alerts"), keys: AlertKeys.section) else {
            return nil
        }
        let before = problems.count
        var alerts = AgentConfig.Alerts()
        alerts.enabled = boolean(s, "enabled") ?? false
        alerts.useDefaults = boolean(s, "defaults") ?? false
        let (q, _) = integer(s, "qos", 1...2, default: 1, rangeMessage: "must be 1 or 2")
        alerts.qos = QoS(rawValue: Int(q)) ?? .atLeastOnce
        if let node = s.values["hook"], !isNull(node),
           let h = section(node, path: "alerts.hook", parentLine: line(s, "hook"), keys: AlertKeys.hook) {
            var command: [String] = []
            if let c = value(h, "command") {
                if case let .sequence(items) = c, !items.isEmpty {
                    for item in items {
                        if case let .scalar(arg) = item, !arg.string.unicodeScalars.contains(where: { $0.value == 0 }) {
                            command.append(arg.string)
                        } else {
                            report("alerts.hook.command", line(item, line(h, "command")), "must be a list of strings, got \(describe(item)) in it")
                        }
                    }
                    if let program = command.first, !program.hasPrefix("/") {
                        report("alerts.hook.command", line(h, "command"), "the program must be an absolute path, got \"\(clip(program))\"")
                    }
                } else {
                    report("alerts.hook.command", line(h, "command"),
                           "must be a non-empty list (program and arguments, e.g. [/usr/local/bin/buzz, --alert]), got \(describe(c))")
                }
            } else {
                report("alerts.hook.command", line(h, "command"), "is required (e.g. command: [/usr/local/bin/buzz, --alert])")
            }
            let (timeout, _) = integer(h, "timeout_ms", 1...600_000, default: 5000)
            alerts.hook = AgentConfig.Alerts.Hook(command: command, timeoutMilliseconds: Int(timeout))
        }
        if let node = value(s, "rules") {
            if case let .sequence(items) = node {
                var seen: [String: String] = [:]
                for (index, item) in items.enumerated() {
                    guard let rule = alertRule(item, path: "alerts.rules[\(index)]", parentLine: line(s, "rules")) else { continue }
                    let scopeKey: String = switch rule.scope {
                    case .all: rule.name
                    case .profile(let p): "\(rule.name) profile \(p)"
                    case .patient(let p): "\(rule.name) patient \(p)"
                    }
                    if let first = seen[scopeKey] {
                        report("alerts.rules[\(index)].name", line(item, line(s, "rules")),
                               "duplicate rule '\(rule.name)' for the same scope (also \(first))")
                    } else {
                        seen[scopeKey] = "alerts.rules[\(index)]"
                        alerts.rules.append(rule)
                    }
                }
            } else {
                report("alerts.rules", line(s, "rules"), "must be a list ('- name: ...' entries), got \(describe(node))")
            }
        }
        return problems.count == before ? alerts : nil
    }

    mutating func boolean(_ s: Section, _ key: String) -> Bool? {
        guard let node = value(s, key) else { return nil }
        if case let .scalar(v) = node, v.style == .plain, ["true", "false"].contains(v.string) { return v.string == "true" }
        report(s.path(key), line(s, key), "must be true or false, got \(describe(node))")
        return nil
    }

    mutating func alertRule(_ item: Node, path: String, parentLine: Int) -> AgentConfig.AlertRuleConfig? {
        guard let s = section(item, path: path, parentLine: line(item, parentLine), keys: AlertKeys.rule) else { return nil }
        let before = problems.count
        var name: String?
        if let (n, l) = requiredText(s, "name", example: "spo2-low") {
            if n.isEmpty || n.utf8.count > 48 || !n.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) {
                report(s.path("name"), l, "must be 1-48 characters from [a-z0-9-], got \"\(clip(n))\"")
            } else {
                name = n
            }
        }
        var type: String?
        if let (t, l) = requiredText(s, "type", example: "threshold") {
            if AlertKeys.types.contains(t) { type = t } else {
                var message = "must be one of \(AlertKeys.types.joined(separator: ", ")), got \"\(clip(t))\""
                if let near = closest(t, among: AlertKeys.types) { message += " (did you mean '\(near)'?)" }
                report(s.path("type"), l, message)
            }
        }
        var scope = AgentConfig.AlertRuleConfig.Scope.all
        let profile = text(s, "profile"), patient = text(s, "patient")
        if let profile, patient != nil {
            report(s.path("patient"), profile.1, "give profile or patient, not both")
        } else if let (p, l) = profile {
            if let problem = identifierProblem(p, maxLength: 64) { report(s.path("profile"), l, problem) } else { scope = .profile(p) }
        } else if let (p, l) = patient {
            if p.isEmpty || p.utf8.count > 64 { report(s.path("patient"), l, "must be 1-64 bytes") } else { scope = .patient(p) }
        }
        var severity = "medium"
        if let (v, l) = text(s, "severity") {
            if ["low", "medium", "high"].contains(v) { severity = v } else {
                report(s.path("severity"), l, "must be one of low, medium, high, got \"\(clip(v))\"")
            }
        }
        let raiseAfter = seconds(s, "for_s") ?? 0
        let clearAfter = seconds(s, "clear_after_s") ?? 0
        guard let type, let name else { return nil }
        // Keys of other types are mistakes (a `below` on a rate rule would silently do nothing).
        let allowed = AlertKeys.parameters[type] ?? []
        for key in s.values.keys.sorted() where Set(AlertKeys.rule).subtracting(["name", "type", "profile", "patient", "severity", "for_s", "clear_after_s"]).contains(key) && !allowed.contains(key) {
            report(s.path(key), line(s, key), "does not apply to type \(type) (it takes \(allowed.isEmpty ? "no parameters" : allowed.sorted().joined(separator: ", ")))")
        }
        if (type == "no-reading" || type == "broker-unreachable" || type == "disconnected"), value(s, "for_s") != nil {
            report(s.path("for_s"), line(s, "for_s"), "does not apply to type \(type) (use after_s)")
        }
        var condition: AgentConfig.AlertRuleConfig.Condition?
        switch type {
        case "threshold":
            let code = mdcCode(s)
            let directions = ["below", "above", "at_or_above", "at_or_below"].filter { value(s, $0) != nil }
            if directions.count != 1 {
                report(s.path("below"), s.line, "a threshold needs exactly one of below, above, at_or_above, at_or_below\(directions.isEmpty ? "" : " (got \(directions.joined(separator: ", ")))")")
            }
            let finite: (Double) -> Bool = { $0.isFinite }
            if directions.count == 1, let direction = directions.first,
               let (limit, _) = number(s, direction, finite, rangeMessage: "must be a finite number"), let code {
                let clear = number(s, "clear", finite, rangeMessage: "must be a finite number")?.0 ?? limit
                let wrongSide: Bool = switch direction {
                case "below", "at_or_below": clear < limit
                default: clear > limit
                }
                if wrongSide {
                    report(s.path("clear"), line(s, "clear"), "must be on the normal side of the threshold (\(String(direction.map { $0 == "_" ? " " : $0 })) \(limit) clears at a value \(direction.contains("below") ? ">=" : "<=") \(limit))")
                } else {
                    condition = .threshold(code: code, direction: String(direction.map { $0 == "_" ? "-" : $0 }), raise: limit, clear: clear)
                }
            }
        case "rate":
            let code = mdcCode(s)
            let delta = number(s, "delta", { $0.isFinite && $0 != 0 }, rangeMessage: "must be a non-zero number (negative: a fall)")
            if value(s, "delta") == nil { report(s.path("delta"), line(s, "delta"), "is required (e.g. delta: 30)") }
            let window = seconds(s, "window_s")
            if value(s, "window_s") == nil { report(s.path("window_s"), line(s, "window_s"), "is required (e.g. window_s: 60)") }
            if let code, let delta, let window {
                if window == 0 { report(s.path("window_s"), line(s, "window_s"), "must be more than 0") } else {
                    condition = .rate(code: code, delta: delta.0, windowMilliseconds: window)
                }
            }
        case "no-reading", "disconnected", "broker-unreachable":
            if let after = requiredSeconds(s, "after_s", example: "300") {
                condition = type == "no-reading" ? .noReading(afterMilliseconds: after)
                    : type == "disconnected" ? .disconnected(afterMilliseconds: after) : .brokerUnreachable(afterMilliseconds: after)
            }
        case "sensor-off":
            condition = .sensorOff
        case "battery-low", "buffer-high":
            let range: (Double) -> Bool = { $0 > 0 && $0 < 100 }
            if value(s, "percent") == nil { report(s.path("percent"), line(s, "percent"), "is required (e.g. percent: \(type == "battery-low" ? 15 : 80))") }
            if let (p, _) = number(s, "percent", range, rangeMessage: "must be more than 0 and less than 100") {
                let low = type == "battery-low"
                let clear = number(s, "clear", { $0 >= 0 && $0 <= 100 }, rangeMessage: "must be between 0 and 100")?.0 ?? (low ? p + 5 : p - 5)
                if low ? clear < p : clear > p {
                    report(s.path("clear"), line(s, "clear"), "must be \(low ? "at least" : "at most") percent (\(p))")
                } else {
                    condition = low ? .batteryLow(percent: p, clear: clear) : .bufferHigh(percent: p, clear: clear)
                }
            }
        case "clock-drift":
            if let max = requiredSeconds(s, "max_offset_s", example: "60") { condition = .clockDrift(maxOffsetMilliseconds: max) }
        default: break
        }
        guard problems.count == before, let condition else { return nil }
        return AgentConfig.AlertRuleConfig(name: name, scope: scope, condition: condition, severity: severity,
                                           raiseAfterMilliseconds: raiseAfter, clearAfterMilliseconds: clearAfter)
    }

    /// A duration in seconds (decimals allowed, 0 to one day), as milliseconds.
    mutating func seconds(_ s: Section, _ key: String) -> UInt64? {
        guard let (v, _) = number(s, key, { $0 >= 0 && $0 <= 86_400 }, rangeMessage: "must be between 0 and 86400 seconds") else {
            return nil
        }
        return UInt64((v * 1000).rounded())
    }

    mutating func requiredSeconds(_ s: Section, _ key: String, example: String) -> UInt64? {
        guard value(s, key) != nil else {
            report(s.path(key), line(s, key), "is required (e.g. \(key): \(example))")
            return nil
        }
        guard let v = seconds(s, key) else { return nil }
        if v == 0 { report(s.path(key), line(s, key), "must be more than 0"); return nil }
        return v
    }

    /// `code`: an MDC code as a number (150456) or a reference id (MDC_PULS_OXIM_SAT_O2).
    mutating func mdcCode(_ s: Section) -> MDCCode? {
        guard let node = value(s, "code") else {
            report(s.path("code"), line(s, "code"), "is required (an MDC code, e.g. code: MDC_PULS_OXIM_SAT_O2 or 150456)")
            return nil
        }
        guard case let .scalar(v) = node else {
            report(s.path("code"), line(s, "code"), "must be an MDC code, got \(describe(node))")
            return nil
        }
        if let n = UInt32(v.string), n > 0 { return MDCCode(rawValue: n) }
        if let known = AlertKeys.knownCodes.first(where: { $0.referenceID == v.string }) { return known }
        let names = AlertKeys.knownCodes.compactMap(\.referenceID)
        var message = "must be an MDC code number or one of \(names.joined(separator: ", ")), got \"\(clip(v.string))\""
        if let near = closest(v.string, among: names) { message += " (did you mean '\(near)'?)" }
        report(s.path("code"), line(s, "code"), message)
        return nil
    }
}
