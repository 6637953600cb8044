import IoMTCore

/// Clinical (about the patient's values) or technical (about the equipment or the link).
/// Open set, like IEC 60601-1-8 §6.1's physiological / technical alarm conditions.
public struct AlertKind: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public static let clinical: AlertKind = "clinical"
    public static let technical: AlertKind = "technical"
}

/// How urgent: the three priorities of IEC 60601-1-8 §6.1.2 (low, medium, high). Open set.
public struct AlertSeverity: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public static let low: AlertSeverity = "low"
    public static let medium: AlertSeverity = "medium"
    public static let high: AlertSeverity = "high"
    public static let known: [AlertSeverity] = [.low, .medium, .high]
}

/// Whom a rule applies to. A patient rule replaces the profile or global rule with the same
/// `name` for that patient (the most specific scope wins: patient, then profile, then all).
public enum RuleScope: Hashable, Sendable {
    /// Every device and patient.
    case all
    /// Devices of this profile (e.g. `pulse-oximeter`, `nonin-3150`).
    case profile(String)
    /// This patient (the id as configured, never the pseudonym).
    case patient(String)

    var specificity: Int {
        switch self {
        case .all: 0
        case .profile: 1
        case .patient: 2
        }
    }
}

/// Which way a threshold is crossed.
public enum ThresholdDirection: String, Hashable, Sendable, CaseIterable {
    /// Raise when the value is below `raise` (SpO2 < 90); clear when it is >= `clear`.
    case below
    /// Raise when the value is above `raise` (pulse > 130); clear when it is <= `clear`.
    case above
    /// Raise when the value is >= `raise` (temperature >= 38.3); clear when it is < `clear`.
    case atOrAbove = "at-or-above"
    /// Raise when the value is <= `raise` (battery <= 15 %); clear when it is > `clear`.
    case atOrBelow = "at-or-below"

    func raises(_ v: Double, _ limit: Double) -> Bool {
        switch self {
        case .below: v < limit
        case .above: v > limit
        case .atOrAbove: v >= limit
        case .atOrBelow: v <= limit
        }
    }

    func clears(_ v: Double, _ limit: Double) -> Bool {
        switch self {
        case .below: v >= limit
        case .above: v <= limit
        case .atOrAbove: v < limit
        case .atOrBelow: v > limit
        }
    }
}

/// What a rule watches.
public enum AlertCondition: Hashable, Sendable {
    /// A numeric observation with this MDC code crosses `raise`; the alert clears only once it
    /// is back past `clear` (hysteresis). Both must hold without interruption for the rule's
    /// `raiseAfterMs` / `clearAfterMs`.
    case threshold(code: MDCCode, direction: ThresholdDirection, raise: Double, clear: Double)
    /// The value changed by more than `delta` (signed: > 0 a rise, < 0 a fall) within `windowMs`
    /// (e.g. pulse rises by more than 30 /min within 60 s). Clears once the change within the
    /// window is back inside `delta`.
    case rateOfChange(code: MDCCode, delta: Double, windowMs: UInt64)
    /// No reading from a device for `afterMs` (per device; the scope picks the devices).
    case noReading(afterMs: UInt64)
    /// The device says the sensor is off the patient (finger out, probe error, no skin contact).
    case sensorOff
    /// The source says the device is disconnected or unplugged for `afterMs`.
    case deviceDisconnected(afterMs: UInt64)
    /// Battery charge (`MDC_ATTR_VAL_BATT_CHARGE`, %) at or below `percent`; clears above
    /// `clearPercent`.
    case batteryLow(percent: Double, clearPercent: Double)
    /// The device's clock differs from the gateway's by more than `maxOffsetMs` (live readings
    /// timed by the device's clock, or an offset a source measured).
    case clockDrift(maxOffsetMs: UInt64)
    /// The durable buffer holds more than `fraction` of its bound; clears below `clearFraction`.
    case bufferHigh(fraction: Double, clearFraction: Double)
    /// The broker has been unreachable for `afterMs` (raised locally, published on reconnect).
    case brokerUnreachable(afterMs: UInt64)

    /// Clinical for value rules, technical for the rest.
    public var kind: AlertKind {
        switch self {
        case .threshold, .rateOfChange: .clinical
        default: .technical
        }
    }

    /// The observation the rule reads, if any.
    public var code: MDCCode? {
        switch self {
        case .threshold(let code, _, _, _), .rateOfChange(let code, _, _): code
        case .batteryLow: .batteryCharge
        default: nil
        }
    }

    /// Rules about the gateway rather than a device.
    var isGatewayWide: Bool {
        switch self {
        case .bufferHigh, .brokerUnreachable: true
        default: false
        }
    }
}

/// One alert rule.
public struct AlertRule: Hashable, Sendable {
    /// The rule's name: in the topic (`<prefix>/alerts/<patient>/<name>`), in each alert and
    /// in overrides (a patient rule replaces the profile rule of the same name).
    public var name: String
    public var scope: RuleScope
    public var condition: AlertCondition
    public var severity: AlertSeverity
    /// The condition must hold this long (every reading in between satisfying it) before the
    /// alert is raised. 0: on the first reading.
    public var raiseAfterMs: UInt64
    /// The clear condition must hold this long before the alert clears.
    public var clearAfterMs: UInt64
    /// Only observations in this UCUM unit count (nil: any unit). A threshold in Cel must not
    /// read a [degF] value.
    public var unit: UCUMUnit?

    public init(name: String, scope: RuleScope = .all, condition: AlertCondition, severity: AlertSeverity = .medium,
                raiseAfterMs: UInt64 = 0, clearAfterMs: UInt64 = 0, unit: UCUMUnit? = nil) {
        self.unit = unit
        self.name = name
        self.scope = scope
        self.condition = condition
        self.severity = severity
        self.raiseAfterMs = raiseAfterMs
        self.clearAfterMs = clearAfterMs
    }

    public var kind: AlertKind { condition.kind }
}
