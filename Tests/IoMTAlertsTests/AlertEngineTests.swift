import IoMTAlerts
import IoMTCore
import Testing

/// Builders: one oximeter, one patient, readings at gateway time `now` (ms).
enum Fixture {
    static let t0: UInt64 = 1_750_000_000_000
    static let oximeter = DeviceRef(id: "ox-1", profile: "pulse-oximeter", transport: .simulated)

    static func reading(at now: UInt64, _ obs: [Observation], device: DeviceRef = oximeter, patient: String = "p-1",
                        status: [String] = [], quality: TimeQuality = .simulated, measured: UInt64? = nil,
                        cursor: String? = nil) -> DeviceReading {
        DeviceReading(device: device, patientID: patient,
                      measuredAt: Timestamp(millisecondsSinceEpoch: Int64(measured ?? now)),
                      receivedAt: Timestamp(millisecondsSinceEpoch: Int64(now)), timeQuality: quality,
                      observations: obs, sourceCursor: cursor, deviceStatus: status)
    }

    static func spo2(_ v: Double) -> Observation { Observation(code: .pulseOximetrySpO2, value: .numeric(v), unit: .percent) }
    static func pulse(_ v: Double) -> Observation { Observation(code: .pulseOximetryPulseRate, value: .numeric(v), unit: .perMinute) }

    static let desaturation = AlertRule(
        name: "spo2-low", scope: .profile("pulse-oximeter"),
        condition: .threshold(code: .pulseOximetrySpO2, direction: .below, raise: 90, clear: 92),
        severity: .high, raiseAfterMs: 15_000, clearAfterMs: 10_000)
}


func rid(_ n: UInt64) -> ReadingID { ReadingID(high: 0x0190_0000_0000_7000 | n, low: 0x8000_0000_0000_0000 | n) }

/// Feeds one SpO2 value a second from `start`; returns every event with its second.
func feedSpO2(_ engine: inout AlertEngine, _ values: [Double], start: UInt64 = Fixture.t0, idBase: UInt64 = 0)
    -> [(second: Int, event: AlertEvent)] {
    var out: [(Int, AlertEvent)] = []
    for (i, v) in values.enumerated() {
        let now = start + UInt64(i) * 1000
        for e in engine.observe(Fixture.reading(at: now, [Fixture.spo2(v)]), id: rid(idBase + UInt64(i)), now: now) {
            out.append((i, e))
        }
    }
    return out
}

@Suite("Alert engine: thresholds")
struct ThresholdTests {
    @Test("a desaturation raises once after the minimum duration and clears once, same id")
    func desaturationRaisesOnceAndClearsOnce() throws {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        // 5 s normal, 30 s at 85 %, then 30 s at 95 %.
        let values = Array(repeating: 97.0, count: 5) + Array(repeating: 85.0, count: 30) + Array(repeating: 95.0, count: 30)
        let events = feedSpO2(&engine, values)
        try #require(events.count == 2)
        let raise = events[0], clear = events[1]
        #expect(raise.event.phase == .raise)
        #expect(raise.second == 20) // condition from second 5, held 15 s
        #expect(raise.event.alert.conditionSince == Fixture.t0 + 5000)
        #expect(raise.event.readingIDs.first == rid(5))
        #expect(raise.event.readingIDs.last == rid(20))
        #expect(raise.event.values.allSatisfy { $0 == 85 })
        #expect(raise.event.alert.patientID == "p-1")
        #expect(raise.event.alert.deviceID == "ox-1")
        #expect(raise.event.alert.kind == .clinical)
        #expect(raise.event.alert.severity == .high)
        #expect(clear.event.phase == .clear)
        #expect(clear.second == 45) // recovered at 35, held 10 s
        #expect(clear.event.alert.id == raise.event.alert.id)
        #expect(clear.event.readingIDs.first == rid(35))
        #expect(engine.active.isEmpty)
    }

    @Test("a dip shorter than the minimum duration raises nothing")
    func shortDipDoesNotRaise() {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        let events = feedSpO2(&engine, Array(repeating: 85.0, count: 14) + [95, 95])
        #expect(events.isEmpty)
    }

    @Test("values flapping 89/91 around the threshold neither raise nor, once raised, clear")
    func flappingDoesNotFlap() {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        let flapping = (0..<60).map { $0 % 2 == 0 ? 89.0 : 91.0 }
        #expect(feedSpO2(&engine, flapping).isEmpty)
        // Raised by a sustained low, then flapping in the hysteresis band keeps it raised.
        let low = Array(repeating: 88.0, count: 16)
        let events = feedSpO2(&engine, low + flapping, start: Fixture.t0 + 100_000, idBase: 100)
        #expect(events.count == 1)
        #expect(events.first?.event.phase == .raise)
        #expect(engine.active.count == 1)
        // Flapping across the clear level (91/93) does not clear either: 93 never holds 10 s.
        let acrossClear = (0..<60).map { $0 % 2 == 0 ? 91.0 : 93.0 }
        #expect(feedSpO2(&engine, acrossClear, start: Fixture.t0 + 300_000, idBase: 300).isEmpty)
        #expect(engine.active.count == 1)
    }

    @Test("an invalid value never raises a clinical threshold and interrupts the run")
    func invalidValueNeverRaises() {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        var events: [AlertEvent] = []
        for i in 0..<40 {
            let now = Fixture.t0 + UInt64(i) * 1000
            // Every 10th reading the finger is out; the rest are low. No run of 15 s of valid lows.
            let obs = i % 10 == 9
                ? Observation(code: .pulseOximetrySpO2, value: .unavailable(.sensorOff), unit: .percent)
                : Fixture.spo2(85)
            events += engine.observe(Fixture.reading(at: now, [obs]), id: rid(UInt64(i)), now: now)
        }
        #expect(events.isEmpty)
        var only: [AlertEvent] = []
        for i in 0..<40 {
            let now = Fixture.t0 + 100_000 + UInt64(i) * 1000
            let obs = Observation(code: .pulseOximetrySpO2, value: .unavailable(.outOfRange), unit: .percent)
            only += engine.observe(Fixture.reading(at: now, [obs]), id: rid(UInt64(i)), now: now)
        }
        #expect(only.isEmpty)
    }

    @Test("unknown MDC codes and other profiles are ignored")
    func unknownCodesIgnored() {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        var events: [AlertEvent] = []
        let unknown = Observation(code: MDCCode(rawValue: 0x0ABC_DEF0), value: .numeric(1), unit: .dimensionless)
        let thermometer = DeviceRef(id: "th-1", profile: "thermometer", transport: .simulated)
        for i in 0..<30 {
            let now = Fixture.t0 + UInt64(i) * 1000
            events += engine.observe(Fixture.reading(at: now, [unknown]), id: rid(UInt64(i)), now: now)
            events += engine.observe(Fixture.reading(at: now, [Fixture.spo2(50)], device: thermometer), id: rid(UInt64(i)), now: now)
        }
        #expect(events.isEmpty)
    }

    @Test("a patient rule overrides the profile rule of the same name")
    func patientRuleOverridesProfileRule() {
        var patientRule = Fixture.desaturation
        patientRule.scope = .patient("p-2")
        patientRule.condition = .threshold(code: .pulseOximetrySpO2, direction: .below, raise: 85, clear: 88)
        var engine = AlertEngine(rules: [Fixture.desaturation, patientRule], seed: 1)
        var p1: [AlertEvent] = [], p2: [AlertEvent] = []
        for i in 0..<20 {
            let now = Fixture.t0 + UInt64(i) * 1000
            p1 += engine.observe(Fixture.reading(at: now, [Fixture.spo2(87)]), id: rid(UInt64(i)), now: now)
            let other = DeviceRef(id: "ox-2", profile: "pulse-oximeter", transport: .simulated)
            p2 += engine.observe(Fixture.reading(at: now, [Fixture.spo2(87)], device: other, patient: "p-2"), id: rid(UInt64(i)), now: now)
        }
        #expect(p1.count == 1)
        #expect(p2.isEmpty)
        #expect(engine.rules(profile: "pulse-oximeter", patientID: "p-2").first?.scope == .patient("p-2"))
    }

    @Test("restored alerts clear with their original id")
    func restoredAlertClearsWithSameID() throws {
        var first = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        let raised = feedSpO2(&first, Array(repeating: 80.0, count: 16))
        let alert = try #require(raised.first?.event.alert)
        var second = AlertEngine(rules: [Fixture.desaturation], seed: 2)
        second.restore(first.active)
        let events = feedSpO2(&second, Array(repeating: 96.0, count: 11), start: Fixture.t0 + 60_000)
        #expect(events.count == 1)
        #expect(events.first?.event.phase == .clear)
        #expect(events.first?.event.alert.id == alert.id)
    }

    @Test("stored records measured long ago feed no value rule")
    func oldRecordsIgnored() {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 1)
        var events: [AlertEvent] = []
        for i in 0..<30 {
            let now = Fixture.t0 + UInt64(i) * 1000
            events += engine.observe(Fixture.reading(at: now, [Fixture.spo2(80)], measured: now - 3_600_000),
                                     id: rid(UInt64(i)), now: now)
        }
        #expect(events.isEmpty)
    }
}

@Suite("Alert engine: rate of change and time rules")
struct RateAndTimeTests {
    static let pulseRise = AlertRule(name: "pulse-rise", condition: .rateOfChange(code: .pulseOximetryPulseRate, delta: 30, windowMs: 60_000))

    @Test("pulse rising by more than 30 within 60 s raises; a slow rise does not")
    func rateOfChange() throws {
        var engine = AlertEngine(rules: [Self.pulseRise], seed: 3)
        var events: [(Int, AlertEvent)] = []
        // Slow: +20 over 120 s.
        for i in 0..<120 {
            let now = Fixture.t0 + UInt64(i) * 1000
            for e in engine.observe(Fixture.reading(at: now, [Fixture.pulse(70 + Double(i) / 6)]), id: rid(UInt64(i)), now: now) {
                events.append((i, e))
            }
        }
        #expect(events.isEmpty)
        // Fast: 80 -> 115 in 20 s.
        for i in 0..<40 {
            let now = Fixture.t0 + 200_000 + UInt64(i) * 1000
            let v = i < 20 ? 80 + Double(i) * 1.75 : 115
            for e in engine.observe(Fixture.reading(at: now, [Fixture.pulse(v)]), id: rid(UInt64(i)), now: now) {
                events.append((i, e))
            }
        }
        let raise = try #require(events.first)
        #expect(raise.1.phase == .raise)
        #expect(raise.0 == 18) // 80 + 18 * 1.75 = 111.5 > 110
        // Steady at 115: once the rise leaves the 60 s window, it clears.
        for i in 40..<120 {
            let now = Fixture.t0 + 200_000 + UInt64(i) * 1000
            for e in engine.observe(Fixture.reading(at: now, [Fixture.pulse(115)]), id: rid(UInt64(i)), now: now) {
                events.append((i, e))
            }
        }
        #expect(events.count == 2)
        #expect(events.last?.1.phase == .clear)
        #expect(events.last?.1.alert.id == raise.1.alert.id)
    }

    @Test("a gap in readings raises at the deadline and the next reading clears it")
    func noReading() throws {
        var engine = AlertEngine(rules: [AlertRule(name: "no-reading", condition: .noReading(afterMs: 300_000))], seed: 4)
        #expect(engine.nextDeadline == nil)
        _ = engine.observe(Fixture.reading(at: Fixture.t0, [Fixture.spo2(97)]), id: rid(1), now: Fixture.t0)
        #expect(engine.nextDeadline == Fixture.t0 + 300_000)
        #expect(engine.advance(now: Fixture.t0 + 299_999).isEmpty)
        let raised = engine.advance(now: Fixture.t0 + 300_000)
        try #require(raised.count == 1)
        #expect(raised[0].phase == .raise)
        #expect(raised[0].alert.kind == .technical)
        #expect(raised[0].values == [300])
        #expect(engine.nextDeadline == nil) // raised: nothing more to wait for
        #expect(engine.advance(now: Fixture.t0 + 900_000).isEmpty)
        let cleared = engine.observe(Fixture.reading(at: Fixture.t0 + 950_000, [Fixture.spo2(97)]), id: rid(2),
                                     now: Fixture.t0 + 950_000)
        #expect(cleared.map(\.phase) == [.clear])
        #expect(cleared.first?.alert.id == raised[0].alert.id)
        #expect(cleared.first?.readingIDs == [rid(2)])
    }

    @Test("a registered device that never sends raises no-reading too")
    func registeredDeviceNoReading() {
        var engine = AlertEngine(rules: [AlertRule(name: "no-reading", scope: .profile("pulse-oximeter"),
                                                   condition: .noReading(afterMs: 60_000))], seed: 4)
        engine.register(deviceID: "ox-9", profile: "pulse-oximeter", patientID: "p-9", now: Fixture.t0)
        #expect(engine.nextDeadline == Fixture.t0 + 60_000)
        let events = engine.advance(now: Fixture.t0 + 60_000)
        #expect(events.map(\.alert.deviceID) == ["ox-9"])
        #expect(events.map(\.alert.patientID) == ["p-9"])
    }
}

@Suite("Alert engine: technical alerts")
struct TechnicalAlertTests {
    @Test("sensor off from a status entry or a sensor-off value raises, valid values clear")
    func sensorOff() {
        var engine = AlertEngine(rules: [AlertRule(name: "sensor-off", condition: .sensorOff, raiseAfterMs: 5000)], seed: 5)
        var events: [AlertEvent] = []
        for i in 0..<10 {
            let now = Fixture.t0 + UInt64(i) * 1000
            let r = i < 5
                ? Fixture.reading(at: now, [Observation(code: .pulseOximetrySpO2, value: .unavailable(.sensorOff), unit: .percent)])
                : Fixture.reading(at: now, [Observation(code: .pulseOximetrySpO2, value: .unavailable(.missing), unit: .percent)],
                                  status: ["sensor-contact-not-detected"])
            events += engine.observe(r, id: rid(UInt64(i)), now: now)
        }
        #expect(events.map(\.phase) == [.raise])
        events += engine.observe(Fixture.reading(at: Fixture.t0 + 10_000, [Fixture.spo2(97)]), id: rid(99), now: Fixture.t0 + 10_000)
        #expect(events.map(\.phase) == [.raise, .clear])
    }

    @Test("device disconnected raises after its delay and clears on reconnect")
    func disconnected() {
        var engine = AlertEngine(rules: [AlertRule(name: "disconnected", condition: .deviceDisconnected(afterMs: 30_000))], seed: 6)
        #expect(engine.sourceStatus(deviceID: "ox-1", profile: "pulse-oximeter", patientID: "p-1", connected: false,
                                    now: Fixture.t0).isEmpty)
        #expect(engine.nextDeadline == Fixture.t0 + 30_000)
        let raised = engine.advance(now: Fixture.t0 + 30_000)
        #expect(raised.map(\.phase) == [.raise])
        let cleared = engine.sourceStatus(deviceID: "ox-1", profile: "pulse-oximeter", patientID: "p-1", connected: true,
                                          now: Fixture.t0 + 40_000)
        #expect(cleared.map(\.phase) == [.clear])
        #expect(cleared.first?.alert.id == raised.first?.alert.id)
    }

    @Test("battery at or below 15 % raises; it clears only above 20 %")
    func batteryLow() {
        var engine = AlertEngine(rules: [AlertRule(name: "battery-low", condition: .batteryLow(percent: 15, clearPercent: 20))], seed: 7)
        func battery(_ v: Double, _ i: UInt64) -> [AlertEvent] {
            let now = Fixture.t0 + i * 1000
            return engine.observe(Fixture.reading(at: now, [Observation(code: .batteryCharge, value: .numeric(v), unit: .percent)]),
                                  id: rid(i), now: now)
        }
        #expect(battery(16, 0).isEmpty)
        #expect(battery(15, 1).map(\.phase) == [.raise])
        #expect(battery(18, 2).isEmpty)
        #expect(battery(21, 3).map(\.phase) == [.clear])
    }

    @Test("a battery level read outside the readings (Bluetooth Battery Service) raises and clears the same alert")
    func batteryLevelFromTheSourceStatus() {
        var engine = AlertEngine(rules: [AlertRule(name: "battery-low", condition: .batteryLow(percent: 15, clearPercent: 20))], seed: 9)
        // Unknown device: nothing to attribute the level to.
        #expect(engine.batteryLevel(deviceID: "hr-1", percent: 5, now: Fixture.t0).isEmpty)
        engine.register(deviceID: "hr-1", profile: "heart-rate", patientID: "p-1", now: Fixture.t0)
        #expect(engine.batteryLevel(deviceID: "hr-1", percent: 40, now: Fixture.t0 + 1000).isEmpty)
        let raised = engine.batteryLevel(deviceID: "hr-1", percent: 12, now: Fixture.t0 + 2000)
        #expect(raised.map(\.phase) == [.raise])
        #expect(raised.first?.alert.deviceID == "hr-1")
        // Reported again on every status heartbeat: no second raise.
        #expect(engine.batteryLevel(deviceID: "hr-1", percent: 12, now: Fixture.t0 + 3000).isEmpty)
        let cleared = engine.batteryLevel(deviceID: "hr-1", percent: 90, now: Fixture.t0 + 4000)
        #expect(cleared.map(\.phase) == [.clear])
        #expect(cleared.first?.alert.id == raised.first?.alert.id)
    }

    @Test("a device clock off by more than 60 s raises on live device-timed readings only")
    func clockDrift() {
        var engine = AlertEngine(rules: [AlertRule(name: "clock-drift", condition: .clockDrift(maxOffsetMs: 60_000))], seed: 8)
        let now = Fixture.t0
        // Stored record (with a cursor): old time is expected, not drift.
        #expect(engine.observe(Fixture.reading(at: now, [Fixture.spo2(97)], quality: .deviceUnsynchronized,
                                               measured: now - 120_000, cursor: "c1"), id: rid(1), now: now).isEmpty)
        // Gateway-timed: no device clock to drift.
        #expect(engine.observe(Fixture.reading(at: now, [Fixture.spo2(97)], quality: .gatewayReceipt, measured: now - 120_000),
                               id: rid(2), now: now).isEmpty)
        let raised = engine.observe(Fixture.reading(at: now, [Fixture.spo2(97)], quality: .deviceUnsynchronized,
                                                    measured: now - 120_000), id: rid(3), now: now)
        #expect(raised.map(\.phase) == [.raise])
        #expect(raised.first?.values == [-120])
        let cleared = engine.clockOffset(deviceID: "ox-1", offsetMs: 500, now: now + 1000)
        #expect(cleared.map(\.phase) == [.clear])
    }

    @Test("buffer above 80 % raises, below 75 % clears, in between holds")
    func bufferHigh() {
        var engine = AlertEngine(rules: [AlertRule(name: "buffer-high", condition: .bufferHigh(fraction: 0.8, clearFraction: 0.75))], seed: 9)
        #expect(engine.bufferFill(usedBytes: 800, maxBytes: 1000, now: Fixture.t0).isEmpty)
        let raised = engine.bufferFill(usedBytes: 810, maxBytes: 1000, now: Fixture.t0 + 1)
        #expect(raised.map(\.phase) == [.raise])
        #expect(raised.first?.alert.patientID == nil)
        #expect(raised.first?.values == [81])
        #expect(engine.bufferFill(usedBytes: 770, maxBytes: 1000, now: Fixture.t0 + 2).isEmpty)
        #expect(engine.bufferFill(usedBytes: 700, maxBytes: 1000, now: Fixture.t0 + 3).map(\.phase) == [.clear])
    }

    @Test("broker unreachable for 10 minutes raises at the deadline and clears on reconnect")
    func brokerUnreachable() {
        var engine = AlertEngine(rules: [AlertRule(name: "broker-unreachable", condition: .brokerUnreachable(afterMs: 600_000))], seed: 10)
        #expect(engine.brokerLink(connected: false, now: Fixture.t0).isEmpty)
        #expect(engine.nextDeadline == Fixture.t0 + 600_000)
        // A second "down" does not restart the clock.
        #expect(engine.brokerLink(connected: false, now: Fixture.t0 + 5000).isEmpty)
        let raised = engine.advance(now: Fixture.t0 + 600_000)
        #expect(raised.map(\.phase) == [.raise])
        #expect(engine.nextDeadline == nil)
        let cleared = engine.brokerLink(connected: true, now: Fixture.t0 + 700_000)
        #expect(cleared.map(\.phase) == [.clear])
        #expect(cleared.first?.alert.id == raised.first?.alert.id)
        // Down briefly again: nothing.
        #expect(engine.brokerLink(connected: false, now: Fixture.t0 + 800_000).isEmpty)
        #expect(engine.brokerLink(connected: true, now: Fixture.t0 + 810_000).isEmpty)
    }
}

@Suite("Alert engine: readings the buffer refused")
struct RefusedReadingTests {
    @Test("a reading without an id (refused by the buffer) counts but is not listed")
    func readingWithoutIDCounts() throws {
        var engine = AlertEngine(rules: [Fixture.desaturation], seed: 11)
        var events: [AlertEvent] = []
        for i in 0..<16 {
            let now = Fixture.t0 + UInt64(i) * 1000
            events += engine.observe(Fixture.reading(at: now, [Fixture.spo2(85)]), id: i % 2 == 0 ? rid(UInt64(i)) : nil, now: now)
        }
        let raise = try #require(events.first)
        #expect(events.count == 1)
        #expect(raise.readingIDs == stride(from: 0, through: 14, by: 2).map { rid(UInt64($0)) })
        #expect(raise.values.count == 16)
    }
}
