import IoMTCore

/// One alert: raised once, cleared once, with the same `id` in both events.
public struct Alert: Hashable, Sendable {
    /// Stable id (a UUIDv7, time-ordered), assigned at raise; the clear carries the same id.
    public var id: String
    /// The rule's name.
    public var rule: String
    public var kind: AlertKind
    public var severity: AlertSeverity
    /// The patient as configured (the agent names it on the wire through its PatientReference).
    /// Nil for gateway-wide alerts (buffer, broker).
    public var patientID: String?
    public var deviceID: String?
    public var profile: String?
    /// The observation the rule reads, if any.
    public var code: MDCCode?
    /// When the condition began to hold (ms since the epoch).
    public var conditionSince: UInt64
    /// When the alert was raised (ms since the epoch).
    public var raisedAt: UInt64
    /// The accepted readings that raised it (the last 32 at most), oldest first.
    public var readingIDs: [ReadingID]
    /// The values of those readings, oldest first, also of readings the buffer refused (which
    /// have no id, so the two lists differ in length then); for technical alerts the measure that
    /// raised it (seconds without a reading, buffer fill in %, clock offset in s).
    public var values: [Double]
    /// A PHI-free description of the condition (for logs and the CLI).
    public var summary: String

    public init(id: String, rule: String, kind: AlertKind, severity: AlertSeverity, patientID: String?, deviceID: String?,
                profile: String?, code: MDCCode?, conditionSince: UInt64, raisedAt: UInt64, readingIDs: [ReadingID],
                values: [Double], summary: String) {
        self.id = id; self.rule = rule; self.kind = kind; self.severity = severity; self.patientID = patientID
        self.deviceID = deviceID; self.profile = profile; self.code = code; self.conditionSince = conditionSince
        self.raisedAt = raisedAt; self.readingIDs = readingIDs; self.values = values; self.summary = summary
    }
}

/// A raise or a clear.
public struct AlertEvent: Hashable, Sendable {
    public enum Phase: String, Hashable, Sendable { case raise, clear }
    public var phase: Phase
    /// The alert (for a clear: as it was raised).
    public var alert: Alert
    /// When this event happened (ms since the epoch).
    public var at: UInt64
    /// For a clear: the readings (and their values) that cleared it; for a raise: the alert's.
    public var readingIDs: [ReadingID]
    public var values: [Double]

    public init(phase: Phase, alert: Alert, at: UInt64, readingIDs: [ReadingID], values: [Double]) {
        self.phase = phase
        self.alert = alert
        self.at = at
        self.readingIDs = readingIDs
        self.values = values
    }
}

/// The alert engine: pure, time is an input. Feed it accepted readings, source and link
/// status, buffer fill, and call `advance(now:)` at `nextDeadline`; each call returns the raise
/// and clear events it caused.
///
/// Value rules (thresholds, rate of change, battery, sensor off, clock drift) are evaluated on
/// each reading: an alert is raised on the first reading at which its condition has held,
/// reading after reading, for the rule's `raiseAfterMs`, and cleared likewise after
/// `clearAfterMs` of its clear condition. A reading whose value is invalid (sensor off,
/// searching, out of range, NaN) is neither: it interrupts both runs, so it can never raise
/// a clinical threshold and never clears one either. Observations with codes no rule names
/// are ignored. Time rules (no reading, disconnected, broker unreachable) fire at deadlines:
/// `nextDeadline` says when, so the caller sleeps exactly until then.
public struct AlertEngine: Sendable {
    public private(set) var rules: [AlertRule]
    /// Readings measured longer ago than this (stored records a meter downloads later) feed
    /// no value rule: an alert is about now. Default 5 minutes.
    public var maxReadingAgeMs: UInt64 = 300_000

    struct Key: Hashable { var rule: String; var device: String }

    struct Track {
        var pendingSince: UInt64?
        var pendingIDs: [ReadingID] = []
        var pendingValues: [Double] = []
        var clearSince: UInt64?
        var clearIDs: [ReadingID] = []
        var clearValues: [Double] = []
        var active: Alert?
        var history: [(at: UInt64, value: Double, id: ReadingID?)] = []
    }

    struct Device {
        var profile: String
        var patientID: String
        var lastReadingAt: UInt64
        var disconnectedSince: UInt64?
    }

    enum Eval { case raising, clearing, neither, unknown }

    var tracks: [Key: Track] = [:]
    var devices: [String: Device] = [:]
    var brokerDownSince: UInt64?
    var ids = ReadingIDGenerator()
    var rng: SplitMix64
    static let maxTriggers = 32
    /// Device status names that mean the sensor is off the patient (serial decoders' conditions,
    /// Bluetooth PLX/GHS sensor status names).
    public static let sensorOffStatuses: Set<String> = [
        "sensor-off", "finger-out", "probe-off", "sensor-contact-not-detected", "sensor-disconnected",
        "sensor-unconnected", "no-contact",
    ]

    /// - Parameters:
    ///   - rules: the rules; a patient rule replaces the profile or global rule of the same name.
    ///   - seed: seeds the random part of alert ids (pass fresh randomness in production).
    public init(rules: [AlertRule], seed: UInt64) {
        self.rules = rules
        self.rng = SplitMix64(seed: seed)
    }

    // MARK: Queries

    /// The alerts raised and not yet cleared, oldest first.
    public var active: [Alert] {
        tracks.values.compactMap(\.active).sorted { ($0.raisedAt, $0.id) < ($1.raisedAt, $1.id) }
    }

    /// When `advance(now:)` must next be called (ms since the epoch), or nil if nothing is timed.
    public var nextDeadline: UInt64? {
        var best: UInt64?
        func consider(_ t: UInt64) { best = min(best ?? t, t) }
        for (deviceID, d) in devices {
            for rule in rules(profile: d.profile, patientID: d.patientID) {
                let track = tracks[Key(rule: rule.name, device: deviceID)]
                guard track?.active == nil else { continue }
                switch rule.condition {
                case .noReading(let after): consider(d.lastReadingAt &+ after)
                case .deviceDisconnected(let after): if let since = d.disconnectedSince { consider(since &+ after) }
                default: break
                }
            }
        }
        if let since = brokerDownSince {
            for rule in rules where tracks[Key(rule: rule.name, device: "")]?.active == nil {
                if case .brokerUnreachable(let after) = rule.condition { consider(since &+ after) }
            }
        }
        return best
    }

    /// The patient the device's latest reading was for (nil: never seen or registered).
    public func patientID(of deviceID: String) -> String? { devices[deviceID]?.patientID }

    /// The rules that apply to a device of `profile` for `patientID`: per name, the most
    /// specific scope (patient, then profile, then all). Gateway-wide rules are not included.
    public func rules(profile: String, patientID: String) -> [AlertRule] {
        var byName: [String: AlertRule] = [:]
        var order: [String] = []
        for rule in rules where !rule.condition.isGatewayWide {
            let applies: Bool
            switch rule.scope {
            case .all: applies = true
            case .profile(let p): applies = p == profile
            case .patient(let p): applies = p == patientID
            }
            guard applies else { continue }
            if let existing = byName[rule.name] {
                if rule.scope.specificity > existing.scope.specificity { byName[rule.name] = rule }
            } else {
                byName[rule.name] = rule
                order.append(rule.name)
            }
        }
        return order.compactMap { byName[$0] }
    }

    // MARK: Inputs

    /// Puts back alerts that were active before a restart, so they clear with the same id.
    public mutating func restore(_ alerts: [Alert]) {
        for a in alerts {
            tracks[Key(rule: a.rule, device: a.deviceID ?? ""), default: Track()].active = a
        }
    }

    /// A device the agent knows of before it sends anything (a configured device): its
    /// "no reading" deadline starts now. Does nothing for a device already known.
    public mutating func register(deviceID: String, profile: String, patientID: String, now: UInt64) {
        if devices[deviceID] == nil {
            devices[deviceID] = Device(profile: profile, patientID: patientID, lastReadingAt: now)
        }
    }

    /// A reading: `id` is the id the buffer stored it under, nil for a reading the buffer could
    /// not store (full, storage error). Such a reading still counts (the patient's value is real)
    /// but is not listed in `readingIDs`, since it will never be delivered.
    public mutating func observe(_ reading: DeviceReading, id: ReadingID?, now: UInt64) -> [AlertEvent] {
        let deviceID = reading.device.id
        var device = devices[deviceID] ?? Device(profile: reading.device.profile, patientID: reading.patientID, lastReadingAt: now)
        device.profile = reading.device.profile
        device.patientID = reading.patientID
        device.lastReadingAt = max(device.lastReadingAt, now)
        device.disconnectedSince = nil
        devices[deviceID] = device

        let measured = reading.measuredAt.millisecondsSinceEpoch
        let fresh = measured >= Int64(now) - Int64(maxReadingAgeMs)
        var events: [AlertEvent] = []
        for rule in rules(profile: device.profile, patientID: device.patientID) {
            let key = Key(rule: rule.name, device: deviceID)
            let ctx = Context(patientID: device.patientID, deviceID: deviceID, profile: device.profile)
            switch rule.condition {
            case .threshold(let code, let direction, let raise, let clear):
                guard fresh, let value = Self.value(of: code, in: reading, unit: rule.unit) else { continue }
                let eval: Eval = value.map { v in
                    direction.raises(v, raise) ? .raising : direction.clears(v, clear) ? .clearing : .neither
                } ?? .unknown
                events += step(key, rule, ctx, eval, now: now, id: id, value: value)
            case .batteryLow(let percent, let clearPercent):
                guard let value = Self.value(of: .batteryCharge, in: reading) else { continue }
                let eval: Eval = value.map { v in Self.battery(v, raiseAt: percent, clearAbove: clearPercent) } ?? .unknown
                events += step(key, rule, ctx, eval, now: now, id: id, value: value)
            case .rateOfChange(let code, let delta, let window):
                guard fresh, let value = Self.value(of: code, in: reading, unit: rule.unit) else { continue }
                guard let v = value else {
                    events += step(key, rule, ctx, .unknown, now: now, id: id, value: nil)
                    continue
                }
                var track = tracks[key, default: Track()]
                track.history.removeAll { $0.at &+ window < now }
                track.history.append((now, v, id))
                tracks[key] = track
                let values = track.history.map(\.value)
                let met = delta >= 0 ? v - (values.min() ?? v) > delta : v - (values.max() ?? v) < delta
                events += step(key, rule, ctx, met ? .raising : .clearing, now: now, id: id, value: v)
            case .noReading, .deviceDisconnected:
                if let active = tracks[key]?.active {
                    tracks[key]?.active = nil
                    events.append(AlertEvent(phase: .clear, alert: active, at: now, readingIDs: id.map { [$0] } ?? [], values: []))
                }
            case .sensorOff:
                let off = reading.deviceStatus.contains { Self.sensorOffStatuses.contains($0) }
                    || reading.observations.contains { $0.value == .unavailable(.sensorOff) }
                let valid = reading.observations.contains {
                    if case .numeric = $0.value { return true }
                    if case .waveform = $0.value { return true }
                    return false
                }
                events += step(key, rule, ctx, off ? .raising : valid ? .clearing : .neither, now: now, id: id, value: nil)
            case .clockDrift(let maxOffset):
                let deviceTimed: Set<TimeQuality> = [.deviceSynchronized, .deviceUnsynchronized]
                guard reading.sourceCursor == nil, deviceTimed.contains(reading.timeQuality) else { continue }
                let offset = reading.measuredAt.millisecondsSinceEpoch - reading.receivedAt.millisecondsSinceEpoch
                events += step(key, rule, ctx, offset.magnitude > maxOffset ? .raising : .clearing, now: now, id: id,
                               value: Double(offset) / 1000)
            case .bufferHigh, .brokerUnreachable:
                continue
            }
        }
        return events + advance(now: now)
    }

    /// An offset a source measured between the device's clock and the gateway's (e.g. from the
    /// Bluetooth Current Time or Device Time characteristic), in milliseconds (device - gateway).
    public mutating func clockOffset(deviceID: String, offsetMs: Int64, now: UInt64) -> [AlertEvent] {
        guard let device = devices[deviceID] else { return [] }
        var events: [AlertEvent] = []
        for rule in rules(profile: device.profile, patientID: device.patientID) {
            guard case .clockDrift(let maxOffset) = rule.condition else { continue }
            let ctx = Context(patientID: device.patientID, deviceID: deviceID, profile: device.profile)
            events += step(Key(rule: rule.name, device: deviceID), rule, ctx,
                           offsetMs.magnitude > maxOffset ? .raising : .clearing, now: now, id: nil, value: Double(offsetMs) / 1000)
        }
        return events
    }

    private static func battery(_ v: Double, raiseAt percent: Double, clearAbove clearPercent: Double) -> Eval {
        v <= percent ? .raising : v > clearPercent ? .clearing : .neither
    }

    /// A battery level a source read from the device outside its readings (the Bluetooth
    /// Battery Service, read on each connection), in percent.
    public mutating func batteryLevel(deviceID: String, percent: Int, now: UInt64) -> [AlertEvent] {
        guard let device = devices[deviceID] else { return [] }
        var events: [AlertEvent] = []
        for rule in rules(profile: device.profile, patientID: device.patientID) {
            guard case .batteryLow(let raiseAt, let clearAbove) = rule.condition else { continue }
            let ctx = Context(patientID: device.patientID, deviceID: deviceID, profile: device.profile)
            events += step(Key(rule: rule.name, device: deviceID), rule, ctx,
                           Self.battery(Double(percent), raiseAt: raiseAt, clearAbove: clearAbove), now: now, id: nil,
                           value: Double(percent))
        }
        return events
    }

    /// A source's link state (from `SourceStatus`): unplugged or disconnected starts the
    /// "disconnected" timer; connected clears the alert.
    public mutating func sourceStatus(deviceID: String, profile: String, patientID: String, connected: Bool,
                                      now: UInt64) -> [AlertEvent] {
        register(deviceID: deviceID, profile: profile, patientID: patientID, now: now)
        var events: [AlertEvent] = []
        if connected {
            devices[deviceID]?.disconnectedSince = nil
            for rule in rules(profile: profile, patientID: patientID) {
                guard case .deviceDisconnected = rule.condition else { continue }
                let key = Key(rule: rule.name, device: deviceID)
                if let active = tracks[key]?.active {
                    tracks[key]?.active = nil
                    events.append(AlertEvent(phase: .clear, alert: active, at: now, readingIDs: [], values: []))
                }
            }
        } else if devices[deviceID]?.disconnectedSince == nil {
            devices[deviceID]?.disconnectedSince = now
        }
        return events + advance(now: now)
    }

    /// The durable buffer's fill.
    public mutating func bufferFill(usedBytes: Int64, maxBytes: Int64, now: UInt64) -> [AlertEvent] {
        guard maxBytes > 0 else { return [] }
        let fraction = Double(usedBytes) / Double(maxBytes)
        var events: [AlertEvent] = []
        for rule in rules {
            guard case .bufferHigh(let high, let low) = rule.condition else { continue }
            let eval: Eval = fraction > high ? .raising : fraction < low ? .clearing : .neither
            events += step(Key(rule: rule.name, device: ""), rule, Context(), eval, now: now, id: nil,
                           value: (fraction * 1000).rounded() / 10)
        }
        return events
    }

    /// The broker link went down or came back.
    public mutating func brokerLink(connected: Bool, now: UInt64) -> [AlertEvent] {
        if !connected {
            if brokerDownSince == nil { brokerDownSince = now }
            return advance(now: now)
        }
        brokerDownSince = nil
        var events: [AlertEvent] = []
        for rule in rules {
            guard case .brokerUnreachable = rule.condition else { continue }
            let key = Key(rule: rule.name, device: "")
            if let active = tracks[key]?.active {
                tracks[key]?.active = nil
                events.append(AlertEvent(phase: .clear, alert: active, at: now, readingIDs: [], values: []))
            }
        }
        return events
    }

    /// Raises the time rules whose deadline has passed. Call at `nextDeadline` (calling it
    /// earlier or more often is harmless).
    public mutating func advance(now: UInt64) -> [AlertEvent] {
        var events: [AlertEvent] = []
        for (deviceID, d) in devices.sorted(by: { $0.key < $1.key }) {
            let ctx = Context(patientID: d.patientID, deviceID: deviceID, profile: d.profile)
            for rule in rules(profile: d.profile, patientID: d.patientID) {
                let key = Key(rule: rule.name, device: deviceID)
                guard tracks[key]?.active == nil else { continue }
                switch rule.condition {
                case .noReading(let after) where now >= d.lastReadingAt &+ after:
                    events.append(raise(key, rule, ctx, since: d.lastReadingAt, now: now, ids: [],
                                        values: [Double(now - d.lastReadingAt) / 1000]))
                case .deviceDisconnected(let after):
                    if let since = d.disconnectedSince, now >= since &+ after {
                        events.append(raise(key, rule, ctx, since: since, now: now, ids: [], values: [Double(now - since) / 1000]))
                    }
                default: break
                }
            }
        }
        if let since = brokerDownSince {
            for rule in rules {
                guard case .brokerUnreachable(let after) = rule.condition, now >= since &+ after else { continue }
                let key = Key(rule: rule.name, device: "")
                guard tracks[key]?.active == nil else { continue }
                events.append(raise(key, rule, Context(), since: since, now: now, ids: [], values: [Double(now - since) / 1000]))
            }
        }
        return events
    }

    // MARK: Internals

    struct Context {
        var patientID: String?
        var deviceID: String?
        var profile: String?
    }

    /// The reading's value for `code`: nil if it has no such observation, `.some(nil)` if the
    /// observation has no usable number.
    static func value(of code: MDCCode, in reading: DeviceReading, unit: UCUMUnit? = nil) -> Double?? {
        guard let o = reading.observations.first(where: { $0.code == code && (unit == nil || $0.unit == unit) }) else { return nil }
        if case .numeric(let v) = o.value, v.isFinite { return .some(v) }
        return .some(nil)
    }

    mutating func step(_ key: Key, _ rule: AlertRule, _ ctx: Context, _ eval: Eval, now: UInt64, id: ReadingID?,
                       value: Double?) -> [AlertEvent] {
        var t = tracks[key, default: Track()]
        defer { tracks[key] = t }
        if let active = t.active {
            guard eval == .clearing else {
                t.clearSince = nil; t.clearIDs = []; t.clearValues = []
                return []
            }
            if t.clearSince == nil { t.clearSince = now }
            if let id { Self.keep(&t.clearIDs, id) }
            if let value { Self.keep(&t.clearValues, value) }
            guard now - (t.clearSince ?? now) >= rule.clearAfterMs else { return [] }
            let event = AlertEvent(phase: .clear, alert: active, at: now, readingIDs: t.clearIDs, values: t.clearValues)
            t.active = nil; t.clearSince = nil; t.clearIDs = []; t.clearValues = []
            return [event]
        }
        guard eval == .raising else {
            t.pendingSince = nil; t.pendingIDs = []; t.pendingValues = []
            return []
        }
        if t.pendingSince == nil { t.pendingSince = now }
        if let id { Self.keep(&t.pendingIDs, id) }
        if let value { Self.keep(&t.pendingValues, value) }
        let since = t.pendingSince ?? now
        guard now - since >= rule.raiseAfterMs else { return [] }
        let alert = makeAlert(rule, ctx, since: since, now: now, ids: t.pendingIDs, values: t.pendingValues)
        t.active = alert; t.pendingSince = nil; t.pendingIDs = []; t.pendingValues = []
        return [AlertEvent(phase: .raise, alert: alert, at: now, readingIDs: alert.readingIDs, values: alert.values)]
    }

    mutating func raise(_ key: Key, _ rule: AlertRule, _ ctx: Context, since: UInt64, now: UInt64, ids: [ReadingID],
                        values: [Double]) -> AlertEvent {
        let alert = makeAlert(rule, ctx, since: since, now: now, ids: ids, values: values)
        tracks[key, default: Track()].active = alert
        return AlertEvent(phase: .raise, alert: alert, at: now, readingIDs: ids, values: values)
    }

    mutating func makeAlert(_ rule: AlertRule, _ ctx: Context, since: UInt64, now: UInt64, ids: [ReadingID],
                            values: [Double]) -> Alert {
        let id = ids_next(now)
        return Alert(id: id, rule: rule.name, kind: rule.kind, severity: rule.severity, patientID: ctx.patientID,
                     deviceID: ctx.deviceID, profile: ctx.profile, code: rule.condition.code, conditionSince: since,
                     raisedAt: now, readingIDs: ids, values: values, summary: Self.summary(rule))
    }

    private mutating func ids_next(_ now: UInt64) -> String {
        ids.next(at: Timestamp(millisecondsSinceEpoch: Int64(clamping: now)), using: &rng).description
    }

    static func keep<T>(_ list: inout [T], _ item: T) {
        list.append(item)
        if list.count > maxTriggers { list.removeFirst(list.count - maxTriggers) }
    }

    /// A PHI-free description of a rule.
    public static func summary(_ rule: AlertRule) -> String {
        func secs(_ ms: UInt64) -> String { ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms" }
        func num(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
        let held = rule.raiseAfterMs > 0 ? " for \(secs(rule.raiseAfterMs))" : ""
        switch rule.condition {
        case .threshold(let code, let dir, let raise, let clear):
            let name = code.referenceID ?? String(code.rawValue)
            let op = switch dir { case .below: "<"; case .above: ">"; case .atOrAbove: ">="; case .atOrBelow: "<=" }
            return "\(name) \(op) \(num(raise))\(held) (clears at \(num(clear)))"
        case .rateOfChange(let code, let delta, let window):
            let name = code.referenceID ?? String(code.rawValue)
            return "\(name) \(delta >= 0 ? "rises" : "falls") by more than \(num(abs(delta))) within \(secs(window))"
        case .noReading(let after): return "no reading for \(secs(after))"
        case .sensorOff: return "sensor off\(held)"
        case .deviceDisconnected(let after): return "device disconnected for \(secs(after))"
        case .batteryLow(let percent, _): return "battery <= \(num(percent)) %"
        case .clockDrift(let max): return "device clock off by more than \(secs(max))"
        case .bufferHigh(let f, _): return "buffer above \(num(f * 100)) % of its bound"
        case .brokerUnreachable(let after): return "broker unreachable for \(secs(after))"
        }
    }
}
