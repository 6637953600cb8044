import Testing
@testable import IoMTConfig
import IoMTCore

/// `alerts:` (issue 9): a valid section, the defaults, and one test per kind of bad input,
/// each asserting the key path.
@Suite struct AlertsConfigTests {
    static func yaml(_ alerts: String) -> String { minimalYAML + "\nalerts:\n" + alerts }

    @Test func alertsAreOffByDefault() throws {
        let c = try parseValid(minimalYAML)
        #expect(c.alerts == AgentConfig.Alerts())
        #expect(!c.alerts.enabled)
        #expect(!c.alerts.useDefaults)
    }

    @Test func fullSectionParses() throws {
        let c = try parseValid(Self.yaml("""
              enabled: true
              defaults: true
              qos: 2
              hook:
                command: [/usr/local/bin/buzz, --alert]
                timeout_ms: 1500
              rules:
                - name: spo2-low
                  type: threshold
                  profile: pulse-oximeter
                  code: MDC_PULS_OXIM_SAT_O2
                  below: 88
                  clear: 91
                  for_s: 20
                  clear_after_s: 5
                  severity: high
                - name: spo2-low
                  type: threshold
                  patient: P-7
                  code: 150456
                  below: 85
                - name: pulse-rise
                  type: rate
                  code: MDC_PULS_OXIM_PULS_RATE
                  delta: 30
                  window_s: 60
                - name: quiet
                  type: no-reading
                  after_s: 120
                - name: battery
                  type: battery-low
                  percent: 10
                - name: off
                  type: sensor-off
                  for_s: 3
            """))
        let a = c.alerts
        #expect(a.enabled && a.useDefaults)
        #expect(a.qos == .exactlyOnce)
        #expect(a.hook == .init(command: ["/usr/local/bin/buzz", "--alert"], timeoutMilliseconds: 1500))
        #expect(a.rules.count == 6)
        #expect(a.rules[0] == .init(name: "spo2-low", scope: .profile("pulse-oximeter"),
                                    condition: .threshold(code: .pulseOximetrySpO2, direction: "below", raise: 88, clear: 91),
                                    severity: "high", raiseAfterMilliseconds: 20_000, clearAfterMilliseconds: 5000))
        #expect(a.rules[1].scope == .patient("P-7"))
        #expect(a.rules[1].condition == .threshold(code: .pulseOximetrySpO2, direction: "below", raise: 85, clear: 85))
        #expect(a.rules[2].condition == .rate(code: .pulseOximetryPulseRate, delta: 30, windowMilliseconds: 60_000))
        #expect(a.rules[3].condition == .noReading(afterMilliseconds: 120_000))
        #expect(a.rules[4].condition == .batteryLow(percent: 10, clear: 15))
        #expect(a.rules[5].condition == .sensorOff)
    }

    @Test func unknownKeyInAlertsNamesItsPath() throws {
        let e = problems(Self.yaml("  enabled: true\n  enabeld: true\n"))
        #expect(problem(e, at: "alerts.enabeld") != nil)
    }

    @Test func unknownKeyInARuleNamesItsPath() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: sensor-off\n      colour: red\n"))
        #expect(problem(e, at: "alerts.rules[0].colour") != nil)
    }

    @Test func unknownKeyInHook() throws {
        let e = problems(Self.yaml("  hook:\n    command: [/bin/true]\n    timeout: 5\n"))
        #expect(problem(e, at: "alerts.hook.timeout") != nil)
    }

    @Test func enabledMustBeBoolean() throws {
        let e = problems(Self.yaml("  enabled: yes\n"))
        let p = try #require(problem(e, at: "alerts.enabled"))
        #expect(p.message.contains("true or false"))
    }

    @Test func qosMustBeOneOrTwo() throws {
        let e = problems(Self.yaml("  qos: 0\n"))
        #expect(problem(e, at: "alerts.qos") != nil)
    }

    @Test func hookNeedsAnAbsoluteProgramInAList() throws {
        let e1 = problems(Self.yaml("  hook:\n    command: buzz\n"))
        #expect(problem(e1, at: "alerts.hook.command")?.message.contains("non-empty list") == true)
        let e2 = problems(Self.yaml("  hook:\n    command: [buzz]\n"))
        #expect(problem(e2, at: "alerts.hook.command")?.message.contains("absolute path") == true)
        let e3 = problems(Self.yaml("  hook:\n    timeout_ms: 100\n"))
        #expect(problem(e3, at: "alerts.hook.command")?.message.contains("is required") == true)
        let e4 = problems(Self.yaml("  hook:\n    command: [/bin/true]\n    timeout_ms: 0\n"))
        #expect(problem(e4, at: "alerts.hook.timeout_ms") != nil)
    }

    @Test func rulesMustBeAList() throws {
        let e = problems(Self.yaml("  rules: spo2\n"))
        #expect(problem(e, at: "alerts.rules") != nil)
    }

    @Test func ruleNeedsNameAndKnownType() throws {
        let e = problems(Self.yaml("  rules:\n    - type: treshold\n"))
        #expect(problem(e, at: "alerts.rules[0].name") != nil)
        #expect(problem(e, at: "alerts.rules[0].type")?.message.contains("did you mean 'threshold'?") == true)
    }

    @Test func ruleNameMustBeATopicSafeWord() throws {
        let e = problems(Self.yaml("  rules:\n    - name: SpO2/low\n      type: sensor-off\n"))
        #expect(problem(e, at: "alerts.rules[0].name") != nil)
    }

    @Test func thresholdNeedsExactlyOneDirection() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: threshold\n      code: 150456\n      below: 90\n      above: 99\n"))
        #expect(problem(e, at: "alerts.rules[0].below")?.message.contains("exactly one") == true)
    }

    @Test func thresholdClearOnTheWrongSide() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: threshold\n      code: 150456\n      below: 90\n      clear: 85\n"))
        #expect(problem(e, at: "alerts.rules[0].clear") != nil)
    }

    @Test func unknownMDCNameIsAnError() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: threshold\n      code: MDC_PULS_OXIM_SAT_02\n      below: 90\n"))
        #expect(problem(e, at: "alerts.rules[0].code")?.message.contains("did you mean 'MDC_PULS_OXIM_SAT_O2'?") == true)
    }

    @Test func parameterOfAnotherTypeIsAnError() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: rate\n      code: 150456\n      delta: 5\n      window_s: 60\n      below: 90\n"))
        #expect(problem(e, at: "alerts.rules[0].below")?.message.contains("does not apply to type rate") == true)
    }

    @Test func rateNeedsDeltaAndWindow() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: rate\n      code: 150456\n"))
        #expect(problem(e, at: "alerts.rules[0].delta") != nil)
        #expect(problem(e, at: "alerts.rules[0].window_s") != nil)
    }

    @Test func timeRulesNeedAfter() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: no-reading\n"))
        #expect(problem(e, at: "alerts.rules[0].after_s")?.message.contains("is required") == true)
        let e2 = problems(Self.yaml("  rules:\n    - name: x\n      type: broker-unreachable\n      after_s: -1\n"))
        #expect(problem(e2, at: "alerts.rules[0].after_s") != nil)
    }

    @Test func percentOutOfRange() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: buffer-high\n      percent: 120\n"))
        #expect(problem(e, at: "alerts.rules[0].percent") != nil)
    }

    @Test func severityMustBeKnown() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: sensor-off\n      severity: critical\n"))
        #expect(problem(e, at: "alerts.rules[0].severity") != nil)
    }

    @Test func profileAndPatientTogetherIsAnError() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: sensor-off\n      profile: pulse-oximeter\n      patient: P-1\n"))
        #expect(problem(e, at: "alerts.rules[0].patient") != nil)
    }

    @Test func duplicateRuleForTheSameScope() throws {
        let e = problems(Self.yaml("  rules:\n    - name: x\n      type: sensor-off\n    - name: x\n      type: sensor-off\n"))
        #expect(problem(e, at: "alerts.rules[1].name")?.message.contains("duplicate") == true)
    }
}

@Suite struct SimulatorEpisodeConfigTests {
    @Test func episodeParses() throws {
        let c = try parseValid(minimalYAML + """

            simulators:
              - profile: pulse-oximeter
                patient: P-1
                rate: 2
                episode: {after_s: 10, duration_s: 30, spo2: 84}
            """)
        #expect(c.simulators.first?.episode == .init(afterSeconds: 10, durationSeconds: 30, spo2: 84))
    }

    @Test func episodeOnAThermometerIsAnError() throws {
        let e = problems(minimalYAML + "\nsimulators:\n  - profile: thermometer\n    patient: P-1\n    rate: 1\n    episode: {after_s: 1, duration_s: 2, spo2: 80}\n")
        #expect(problem(e, at: "simulators[0].episode") != nil)
    }

    @Test func episodeMissingOrBadValues() throws {
        let e = problems(minimalYAML + "\nsimulators:\n  - profile: pulse-oximeter\n    patient: P-1\n    rate: 1\n    episode: {after_s: 1, spo2: 180, colour: 2}\n")
        #expect(problem(e, at: "simulators[0].episode.duration_s") != nil)
        #expect(problem(e, at: "simulators[0].episode.spo2") != nil)
        #expect(problem(e, at: "simulators[0].episode.colour") != nil)
    }
}
