import IoMTCore

extension AlertRule {
    /// The default rule set (`alerts.defaults: true`, docs/alerts.md).
    ///
    /// These are conservative examples a clinician will recognise, NOT validated alarm limits:
    /// the clinical team sets the limits for its population (and per patient with patient rules).
    /// Where a number comes from a published source it is named:
    /// - SpO2 < 90 % for 15 s, clearing at >= 92 %: 90 % is the usual adult low-SpO2 alarm
    ///   default of bedside monitors; the 15 s delay and the 2-point hysteresis suppress
    ///   motion artefacts (delays of 10-15 s are common in the alarm-fatigue literature).
    /// - Pulse > 130 or < 45 /min for 30 s: conservative example values.
    /// - Temperature >= 38.3 Cel: the fever threshold of the IDSA/SCCM guideline for new fever
    ///   in adult ICU patients (O'Grady et al., Crit Care Med 2008).
    /// - Systolic > 180 or < 90 mm[Hg]: 180 is the hypertensive-crisis level of the ACC/AHA 2017
    ///   guideline; 90 the usual hypotension limit (e.g. the qSOFA criterion is <= 100).
    /// - No reading for 5 min, battery <= 15 %, device clock off by > 60 s, buffer > 80 % of its
    ///   bound, broker unreachable > 10 min: technical examples.
    public static let defaults: [AlertRule] = [
        AlertRule(name: "spo2-low", condition: .threshold(code: .pulseOximetrySpO2, direction: .below, raise: 90, clear: 92),
                  severity: .high, raiseAfterMs: 15_000, clearAfterMs: 10_000, unit: .percent),
        AlertRule(name: "pulse-high", condition: .threshold(code: .pulseOximetryPulseRate, direction: .above, raise: 130, clear: 125),
                  severity: .medium, raiseAfterMs: 30_000, clearAfterMs: 10_000),
        AlertRule(name: "pulse-low", condition: .threshold(code: .pulseOximetryPulseRate, direction: .below, raise: 45, clear: 50),
                  severity: .medium, raiseAfterMs: 30_000, clearAfterMs: 10_000),
        AlertRule(name: "heart-rate-high", condition: .threshold(code: .heartRate, direction: .above, raise: 130, clear: 125),
                  severity: .medium, raiseAfterMs: 30_000, clearAfterMs: 10_000),
        AlertRule(name: "heart-rate-low", condition: .threshold(code: .heartRate, direction: .below, raise: 45, clear: 50),
                  severity: .medium, raiseAfterMs: 30_000, clearAfterMs: 10_000),
        AlertRule(name: "temperature-high", condition: .threshold(code: .bodyTemperature, direction: .atOrAbove, raise: 38.3, clear: 38.0),
                  severity: .medium, unit: .celsius),
        AlertRule(name: "systolic-high", condition: .threshold(code: .systolic, direction: .above, raise: 180, clear: 170),
                  severity: .high, unit: .millimetreMercury),
        AlertRule(name: "systolic-low", condition: .threshold(code: .systolic, direction: .below, raise: 90, clear: 95),
                  severity: .high, unit: .millimetreMercury),
        AlertRule(name: "no-reading", condition: .noReading(afterMs: 300_000), severity: .medium),
        AlertRule(name: "sensor-off", condition: .sensorOff, severity: .medium, raiseAfterMs: 10_000),
        AlertRule(name: "disconnected", condition: .deviceDisconnected(afterMs: 60_000), severity: .medium),
        AlertRule(name: "battery-low", condition: .batteryLow(percent: 15, clearPercent: 20), severity: .low),
        AlertRule(name: "clock-drift", condition: .clockDrift(maxOffsetMs: 60_000), severity: .low),
        AlertRule(name: "buffer-high", condition: .bufferHigh(fraction: 0.8, clearFraction: 0.75), severity: .medium),
        AlertRule(name: "broker-unreachable", condition: .brokerUnreachable(afterMs: 600_000), severity: .medium),
    ]
}
