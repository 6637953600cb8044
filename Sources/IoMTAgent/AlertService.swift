import IoMTAlerts
import IoMTBuffer
import IoMTConfig
import IoMTCore
import IoMTFHIR
import IoMTRegistry
import Logging

/// Builds the engine's rules from the configuration: the defaults (if asked), then the
/// configured rules; a configured rule with a default's name and the same scope replaces it.
public enum AlertRules {
    public static func from(_ config: AgentConfig.Alerts) -> [AlertRule] {
        let configured = config.rules.map(rule)
        var rules = config.useDefaults ? AlertRule.defaults : []
        rules.removeAll { d in configured.contains { $0.name == d.name && $0.scope == d.scope } }
        return rules + configured
    }

    static func rule(_ c: AgentConfig.AlertRuleConfig) -> AlertRule {
        let scope: RuleScope = switch c.scope {
        case .all: .all
        case .profile(let p): .profile(p)
        case .patient(let p): .patient(p)
        }
        let condition: AlertCondition = switch c.condition {
        case let .threshold(code, direction, raise, clear):
            .threshold(code: code, direction: ThresholdDirection(rawValue: direction) ?? .below, raise: raise, clear: clear)
        case let .rate(code, delta, window): .rateOfChange(code: code, delta: delta, windowMs: window)
        case .noReading(let after): .noReading(afterMs: after)
        case .sensorOff: .sensorOff
        case .disconnected(let after): .deviceDisconnected(afterMs: after)
        case let .batteryLow(percent, clear): .batteryLow(percent: percent, clearPercent: clear)
        case .clockDrift(let max): .clockDrift(maxOffsetMs: max)
        case let .bufferHigh(percent, clear): .bufferHigh(fraction: percent / 100, clearFraction: clear / 100)
        case .brokerUnreachable(let after): .brokerUnreachable(afterMs: after)
        }
        return AlertRule(name: c.name, scope: scope, condition: condition, severity: AlertSeverity(rawValue: c.severity),
                         raiseAfterMs: c.raiseAfterMilliseconds, clearAfterMs: c.clearAfterMilliseconds)
    }
}

/// Hands readings to the alert service once the store decided (so the triggering reading ids
/// are the ids the buffer holds). A reading the buffer could not store still counts, without
/// an id: a full buffer must not hide a desaturation. Never waits for the alert work.
public struct AlertingSink: ReadingSink {
    let next: any ReadingSink
    let alerts: AlertService

    public init(next: any ReadingSink, alerts: AlertService) {
        self.next = next
        self.alerts = alerts
    }

    public func submit(_ reading: DeviceReading) async -> IngestOutcome {
        let outcome = await next.submit(reading)
        switch outcome {
        case .accepted(let id, _): alerts.submit(.reading(reading, id))
        case .lost: alerts.submit(.reading(reading, nil))
        }
        return outcome
    }
}

/// The agent side of the alert engine (issue 9): feeds it readings, link and source state and
/// buffer fill through one queue (so events keep their order), sleeps until the engine's
/// `nextDeadline` (a timer re-armed when it changes: no polling tick), and for every event
/// appends an `.alert` message to the durable buffer (ahead of readings, gap records and audit
/// events: see `priority`), persists the active alerts in `state_dir/alerts.json` (a restart
/// clears them with the same id) and runs the local hook.
public actor AlertService {
    public enum Input: Sendable {
        case reading(DeviceReading, ReadingID?)
        case brokerLink(connected: Bool)
        case sources([SourceStatus])
        case bufferFill(usedBytes: Int64, maxBytes: Int64)
        case tick
    }

    /// Alert messages are leased ahead of everything stored at a lower priority (readings 0,
    /// audit 200); the forwarder also sends them ahead of gap records leased in the same batch.
    public static let priority: UInt8 = 255
    public static let schema = "iomt-alert/1"

    public struct Settings: Sendable {
        public var gatewayID: String
        public var topics: Topics
        public var stateDir: String
        /// nil: `iomt-alert/1` JSON; set: a FHIR R4 Flag for patient alerts.
        public var fhir: FHIROptions?
        public var patientReference: PatientReference
        public var hook: AgentConfig.Alerts.Hook?
        /// Device id -> (profile, patient) of configured devices, registered at start so a device
        /// that never sends raises "no reading" too.
        public var knownDevices: [String: (profile: String, patient: String)]
        public init(gatewayID: String, topics: Topics, stateDir: String, fhir: FHIROptions?, patientReference: PatientReference,
                    hook: AgentConfig.Alerts.Hook?, knownDevices: [String: (profile: String, patient: String)] = [:]) {
            self.gatewayID = gatewayID; self.topics = topics; self.stateDir = stateDir; self.fhir = fhir
            self.patientReference = patientReference; self.hook = hook; self.knownDevices = knownDevices
        }
    }

    public nonisolated let inputs: AsyncStream<Input>
    private nonisolated let continuation: AsyncStream<Input>.Continuation
    private var engine: AlertEngine
    private let settings: Settings
    private let buffer: SQLiteBuffer
    private let clock: any WallClock
    private let logger: Logger
    private let onStored: @Sendable () -> Void
    private var ids = ReadingIDGenerator()
    private var timer: Task<Void, Never>?
    private var timerDeadline: UInt64?
    private let hooks: HookRunner?
    /// Alert messages the buffer refused (full, `on_full: reject`, or a storage error), oldest
    /// first: offered again before every new alert and on every buffer-fill report (the status
    /// heartbeat), so a full buffer delays an alert instead of dropping it (until a restart).
    private var unstored: [OutgoingMessage] = []
    public private(set) var raisedCount = 0
    public private(set) var clearedCount = 0

    public var statePath: String { AlertService.statePath(stateDir: settings.stateDir) }
    public static func statePath(stateDir: String) -> String { stateDir + "/alerts.json" }

    public init(rules: [AlertRule], settings: Settings, buffer: SQLiteBuffer, clock: any WallClock, logger: Logger,
                onStored: @escaping @Sendable () -> Void) {
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
        var seed = SystemRandomNumberGenerator()
        engine = AlertEngine(rules: rules, seed: seed.next())
        self.settings = settings
        self.buffer = buffer
        self.clock = clock
        self.logger = logger
        self.onStored = onStored
        hooks = settings.hook.map { HookRunner(hook: $0, logger: logger) }
        let now = UInt64(max(0, clock.now().millisecondsSinceEpoch))
        do {
            let restored = try AlertService.load(path: AlertService.statePath(stateDir: settings.stateDir))
            engine.restore(restored)
            if !restored.isEmpty { logger.notice("alerts still active from the last run", metadata: ["count": "\(restored.count)"]) }
        } catch {
            logger.error("active alerts could not be read back; they will not be cleared", metadata: ["error": "\(error)"])
        }
        for (id, d) in settings.knownDevices.sorted(by: { $0.key < $1.key }) {
            engine.register(deviceID: id, profile: d.profile, patientID: d.patient, now: now)
        }
    }

    /// Queues an input; never blocks (the queue is unbounded but drained as fast as it fills).
    public nonisolated func submit(_ input: Input) { continuation.yield(input) }

    /// Stops the queue; `run` returns once it has handled what was queued.
    public nonisolated func finish() { continuation.finish() }

    /// The alerts raised and not yet cleared.
    public var active: [Alert] { engine.active }

    /// Handles inputs until `finish()`.
    public func run() async {
        rearm()
        for await input in inputs {
            let now = UInt64(max(0, clock.now().millisecondsSinceEpoch))
            let events: [AlertEvent]
            switch input {
            case .reading(let r, let id): events = engine.observe(r, id: id, now: now)
            case .brokerLink(let up): events = engine.brokerLink(connected: up, now: now)
            case .sources(let statuses):
                var out: [AlertEvent] = []
                for s in statuses {
                    // The patient of its latest reading (a registry binding may have changed it),
                    // else the configured one; a device never seen nor configured is skipped.
                    guard let patient = engine.patientID(of: s.deviceID) ?? settings.knownDevices[s.deviceID]?.patient else { continue }
                    out += engine.sourceStatus(deviceID: s.deviceID, profile: s.profile, patientID: patient,
                                               connected: s.connected, now: now)
                    if let level = s.batteryPercent {
                        out += engine.batteryLevel(deviceID: s.deviceID, percent: level, now: now)
                    }
                    if let offset = s.clockOffsetMs {
                        out += engine.clockOffset(deviceID: s.deviceID, offsetMs: offset, now: now)
                    }
                }
                events = out
            case .bufferFill(let used, let max):
                events = engine.bufferFill(usedBytes: used, maxBytes: max, now: now)
                if events.isEmpty, !unstored.isEmpty { await store([]) }
            case .tick:
                timerDeadline = nil
                events = engine.advance(now: now)
            }
            if !events.isEmpty { await emit(events, now: now) }
            rearm()
        }
        timer?.cancel()
        await hooks?.waitForAll()
    }

    /// Sleeps until the engine's next deadline: one timer task, replaced when the deadline moves.
    private func rearm() {
        let deadline = engine.nextDeadline
        guard deadline != timerDeadline else { return }
        timer?.cancel()
        timerDeadline = deadline
        guard let deadline else { timer = nil; return }
        let now = max(0, clock.now().millisecondsSinceEpoch)
        let wait = Int64(clamping: deadline) - now
        timer = Task { [continuation] in
            if wait > 0 {
                do { try await Task.sleep(for: .milliseconds(wait)) } catch { return }
            }
            continuation.yield(.tick)
        }
    }

    private func emit(_ events: [AlertEvent], now: UInt64) async {
        var messages: [OutgoingMessage] = []
        for e in events {
            let id = ids.next(at: Timestamp(millisecondsSinceEpoch: Int64(now)))
            let patientRef = e.alert.patientID.map { settings.patientReference($0) }
            let payload: [UInt8]
            if let fhir = settings.fhir, patientRef != nil {
                payload = AlertFormat.fhirFlag(e, messageID: id, gatewayID: settings.gatewayID, patientRef: patientRef, options: fhir)
            } else {
                payload = AlertFormat.json(e, messageID: id, gatewayID: settings.gatewayID, patientRef: patientRef)
            }
            messages.append(OutgoingMessage(id: id, kind: .alert, topic: settings.topics.alert(patientRef: patientRef, rule: e.alert.rule),
                                            payload: payload, deviceID: nil, sequence: nil, priority: AlertService.priority,
                                            createdAt: Timestamp(millisecondsSinceEpoch: Int64(e.at))))
            if e.phase == .raise { raisedCount += 1 } else { clearedCount += 1 }
            // PHI-free: rule, kind, severity, device id and alert id only.
            logger.notice(e.phase == .raise ? "alert raised" : "alert cleared",
                          metadata: ["alert_id": "\(e.alert.id)", "rule": "\(e.alert.rule)", "kind": "\(e.alert.kind.rawValue)",
                                     "severity": "\(e.alert.severity.rawValue)", "device": "\(e.alert.deviceID ?? "-")"])
        }
        // The state first: after a crash between the two, the worst case is a clear for a raise
        // that was never published (harmless), never a published raise that nothing clears.
        do {
            try Files.writeAtomically(statePath, AlertFormat.stateJSON(engine.active))
        } catch {
            logger.error("active alerts not saved; a restart would not clear them", metadata: ["error": "\(error)"])
        }
        await store(messages)
        if let hooks {
            for (i, e) in events.enumerated() {
                let patientRef = e.alert.patientID.map { settings.patientReference($0) }
                hooks.run(stdin: AlertFormat.json(e, messageID: messages[i].id, gatewayID: settings.gatewayID, patientRef: patientRef))
            }
        }
    }

    /// Appends `messages` after those refused before, in one transaction; keeps what is refused.
    private func store(_ messages: [OutgoingMessage]) async {
        let batch = unstored + messages
        guard !batch.isEmpty else { return }
        do {
            let outcome = try await buffer.append(batch)
            let refused = Set(outcome.rejectedIndices)
            let wasWaiting = unstored.count
            unstored = batch.indices.filter { refused.contains($0) }.map { batch[$0] }
            if !unstored.isEmpty {
                logger.error("alert messages not stored (buffer full); kept in memory and offered again",
                             metadata: ["waiting": "\(unstored.count)"])
            } else if wasWaiting > 0 {
                logger.notice("alert messages that were waiting are stored", metadata: ["count": "\(wasWaiting)"])
            }
            if refused.count < batch.count { onStored() }
        } catch {
            unstored = batch
            logger.error("alert messages not stored; kept in memory and offered again",
                         metadata: ["error": "\(error)", "waiting": "\(unstored.count)"])
        }
    }

    /// Reads `alerts.json`; a missing file is no alert.
    static func load(path: String) throws -> [Alert] {
        guard let bytes = try Files.read(path) else { return [] }
        return try AlertFormat.parseState(bytes)
    }
}

extension AlertService {
    /// Feeds the buffer fill and the sources' link state (called on the status heartbeat).
    static func feedHealth(_ alerts: AlertService, buffer: SQLiteBuffer, sources: [any ReadingSource]) async {
        if let stats = try? await buffer.stats() {
            alerts.submit(.bufferFill(usedBytes: stats.bytes, maxBytes: stats.maxBytes))
        }
        alerts.submit(.sources(sources.flatMap(\.sourceStatuses)))
    }
}

extension Agent {
    /// The alert service for `config.alerts` (enabled).
    func makeAlertService(buffer: SQLiteBuffer, sources: [any ReadingSource], patientReference: PatientReference,
                          onStored: @escaping @Sendable () -> Void) -> AlertService {
        var known: [String: (profile: String, patient: String)] = [:]
        for s in config.simulators { known[s.id] = (s.profile.rawValue, s.patient) }
        for s in config.serial { known[s.id] = (s.profile.rawValue, s.patient) }
        for d in config.bluetooth?.devices ?? [] { known[d.id] = (d.profile.rawValue, d.patient) }
        let settings = AlertService.Settings(
            gatewayID: config.gateway.id, topics: topics, stateDir: config.stateDir,
            fhir: config.output.format == .fhir
                ? (patientReference.isPseudonymous ? FHIROptions(patientIdentifierSystem: "urn:iomt-agent:patient-pseudonym") : FHIROptions())
                : nil,
            patientReference: patientReference, hook: config.alerts.hook, knownDevices: known)
        return AlertService(rules: AlertRules.from(config.alerts), settings: settings, buffer: buffer, clock: clock,
                            logger: logger, onStored: onStored)
    }
}
