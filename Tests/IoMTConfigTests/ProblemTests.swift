import Testing
@testable import IoMTConfig

/// One test per kind of bad input: each asserts the key path, the line and the message.
@Suite struct ProblemTests {
    @Test func unknownTopLevelKey() throws {
        let e = problems(minimalYAML + "\nbrokr:\n  qos: 1\n")
        let p = try #require(problem(e, at: "brokr"))
        #expect(p.line == 5)
        #expect(p.message.contains("did you mean 'broker'?"))
        #expect(e.description.contains("agent.yaml:5: brokr: unknown key"))
    }

    @Test func unknownNestedKeySuggestsSibling() throws {
        let e = problems("""
            gateway:
              id: hub-001
            broker:
              url: mqtt://127.0.0.1:1883
              qso: 2
            """)
        let p = try #require(problem(e, at: "broker.qso"))
        #expect(p.line == 5)
        #expect(p.description == "agent.yaml:5: broker.qso: unknown key (did you mean 'qos'?)")
    }

    @Test func keyInTheWrongSectionSuggestsItsPlace() throws {
        let e = problems(minimalYAML + "\nqos: 2\n")
        let p = try #require(problem(e, at: "qos"))
        #expect(p.line == 5)
        #expect(p.message.contains("'broker.qos'"))
    }

    @Test func unknownKeyInSimulatorEntry() throws {
        let e = problems(minimalYAML + """

            simulators:
              - profile: thermometer
                patient: P-1
                rate: 1
                rat: 2
            """)
        let p = try #require(problem(e, at: "simulators[0].rat"))
        #expect(p.line == 9)
        #expect(p.message.contains("did you mean 'rate'?"))
    }

    @Test func wrongTypeForInteger() throws {
        let e = problems(minimalYAML + """

              keepalive_s: "30"
              inflight_window: [1]
            """)
        let quoted = try #require(problem(e, at: "broker.keepalive_s"))
        #expect(quoted.line == 5)
        #expect(quoted.message == "must be an integer, got a string (\"30\")")
        let list = try #require(problem(e, at: "broker.inflight_window"))
        #expect(list.line == 6)
        #expect(list.message.contains("got a list"))
    }

    @Test func wrongTypeForSection() throws {
        let e = problems("""
            gateway: hub-001
            broker:
              url: mqtt://127.0.0.1:1883
            """)
        let p = try #require(problem(e, at: "gateway"))
        #expect(p.line == 1)
        #expect(p.message.contains("must be a mapping"))
        // No cascade: "gateway.id is required" is not reported on top.
        #expect(e.problems.count == 1)
    }

    @Test func wrongTypeForNumberAndEnum() throws {
        let e = problems(minimalYAML + """

            log:
              level: verbose
            buffer:
              backlog_share: lots
            """)
        let level = try #require(problem(e, at: "log.level"))
        #expect(level.line == 6)
        #expect(level.message.contains("must be one of trace, debug, info, notice, warning, error, critical"))
        let share = try #require(problem(e, at: "buffer.backlog_share"))
        #expect(share.line == 8)
        #expect(share.message.contains("must be a number"))
    }

    @Test func enumTypoIsSuggested() throws {
        let e = problems(minimalYAML + "\nlog:\n  level: warn\n")
        #expect(try #require(problem(e, at: "log.level")).message.hasSuffix("(did you mean 'warning'?)"))
    }

    @Test func outOfRangeQoS() throws {
        let e = problems(minimalYAML + "\n  qos: 3\n")
        let p = try #require(problem(e, at: "broker.qos"))
        #expect(p.description == "agent.yaml:5: broker.qos: must be 1 or 2, got 3")
    }

    @Test(arguments: [
        ("keepalive_s: 4", "broker.keepalive_s", "must be between 5 and 3600, got 4"),
        ("inflight_window: 0", "broker.inflight_window", "must be between 1 and 65535, got 0"),
        ("session_expiry_s: 4294967296", "broker.session_expiry_s", "must be between 0 and 4294967295, got 4294967296"),
        ("status_interval_s: 99999999999999999999999", "broker.status_interval_s", "must be between 1 and 86400"),
    ])
    func outOfRangeIntegers(line: String, keyPath: String, message: String) throws {
        let e = problems(minimalYAML + "\n  \(line)\n")
        let p = try #require(problem(e, at: keyPath))
        #expect(p.line == 5)
        #expect(p.message.hasPrefix(message))
    }

    @Test func outOfRangeSimulatorRate() throws {
        let e = problems(minimalYAML + """

            simulators:
              - {profile: thermometer, patient: P-1, rate: 0}
              - profile: pulse-oximeter
                patient: P-2
                rate: 1001
                count: 0
            """)
        #expect(try #require(problem(e, at: "simulators[0].rate")).line == 6)
        let high = try #require(problem(e, at: "simulators[1].rate"))
        #expect(high.line == 9)
        #expect(high.message.contains("at most 1000"))
        #expect(try #require(problem(e, at: "simulators[1].count")).line == 10)
    }

    @Test func reconnectMaxBelowMin() throws {
        let e = problems(minimalYAML + "\n  reconnect_min_ms: 5000\n  reconnect_max_ms: 1000\n")
        let p = try #require(problem(e, at: "broker.reconnect_max_ms"))
        #expect(p.line == 6)
        #expect(p.message.contains("at least broker.reconnect_min_ms (5000)"))
    }

    @Test func badURLScheme() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: http://broker:1883\n")
        let p = try #require(problem(e, at: "broker.url"))
        #expect(p.line == 4)
        #expect(p.message == "unsupported scheme 'http' (use mqtt:// or mqtts://)")
    }

    @Test func missingHost() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url:\n    - mqtt://a:1883\n    - mqtt://:1883\n")
        let p = try #require(problem(e, at: "broker.url[1]"))
        #expect(p.line == 6)
        #expect(p.message.contains("missing host"))
    }

    @Test(arguments: ["mqtt://broker:99999", "mqtt://broker:0", "mqtt://broker:http", "mqtt://broker:", "mqtt://[::1]:70000"])
    func badPort(url: String) throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: \"\(url)\"\n")
        let p = try #require(problem(e, at: "broker.url"))
        #expect(p.line == 4)
        #expect(p.message.contains("port"))
    }

    @Test func emptyURLList() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: []\n")
        let p = try #require(problem(e, at: "broker.url"))
        #expect(p.line == 4)
        #expect(p.message == "must list at least one broker URL")
    }

    @Test func missingRequiredKeys() throws {
        let e = problems("log:\n  level: info\n")
        #expect(try #require(problem(e, at: "gateway.id")).message.hasPrefix("is required"))
        #expect(try #require(problem(e, at: "broker.url")).message.hasPrefix("is required"))
        let empty = problems("")
        #expect(empty.problems.map(\.keyPath).sorted() == ["broker.url", "gateway.id"])
    }

    @Test func emptyAndInvalidGatewayID() throws {
        let e = problems("gateway:\n  id: \"\"\nbroker:\n  url: mqtt://h\n")
        #expect(try #require(problem(e, at: "gateway.id")).message == "must not be empty")
        let bad = problems("gateway:\n  id: hub 001\nbroker:\n  url: mqtt://h\n")
        let p = try #require(problem(bad, at: "gateway.id"))
        #expect(p.line == 2)
        #expect(p.message.contains("may contain only"))
        let long = problems("gateway:\n  id: \(String(repeating: "a", count: 65))\nbroker:\n  url: mqtt://h\n")
        #expect(try #require(problem(long, at: "gateway.id")).message.contains("at most 64"))
    }

    @Test func brokenYAMLGivesLineAndColumn() throws {
        let e = problems("""
            gateway:
              id: hub-001
            broker:
              url: [mqtt://127.0.0.1:1883
              qos: 1
            """)
        #expect(e.problems.count == 1)
        let p = try #require(e.problems.first)
        #expect(p.line != nil && p.line! >= 4)
        #expect(p.column != nil)
        #expect(p.keyPath.isEmpty)
        #expect(p.message.hasPrefix("YAML syntax error"))
        #expect(e.description.hasPrefix("agent.yaml:\(p.line!):\(p.column!): YAML syntax error"))
    }

    @Test func badIndentationGivesItsLine() throws {
        let e = problems("gateway:\n  id: g\n   broker: x\n")
        #expect(e.problems.first?.line == 3)
    }

    @Test func duplicateYAMLKeyIsReported() throws {
        let e = problems(minimalYAML + "\n  url: mqtt://other\n")
        let p = try #require(e.problems.first)
        #expect(p.line == 4)
        #expect(p.message.contains("'url' appears more than once"))
    }

    @Test func passwordFileWithoutUsername() throws {
        let e = problems(minimalYAML + "\n  password_file: /etc/iomt-agent/broker.password\n")
        let p = try #require(problem(e, at: "broker.password_file"))
        #expect(p.line == 5)
        #expect(p.message.contains("requires broker.username"))
    }

    @Test func certWithoutKeyAndKeyWithoutCert() throws {
        let base = "gateway:\n  id: g\nbroker:\n  url: mqtts://h\n"
        let e = problems(base + "  cert_file: /c.pem\n")
        let p = try #require(problem(e, at: "broker.cert_file"))
        #expect(p.line == 5)
        #expect(p.message.contains("needs broker.key_file"))
        let k = problems(base + "  key_file: /k.pem\n")
        #expect(try #require(problem(k, at: "broker.key_file")).message.contains("needs broker.cert_file"))
    }

    @Test func tlsFilesWithoutTLSURL() throws {
        let e = problems(minimalYAML + "\n  ca_file: /ca.pem\n  cert_file: /c.pem\n  key_file: /k.pem\n")
        #expect(try #require(problem(e, at: "broker.ca_file")).message.contains("only used with mqtts://"))
        #expect(try #require(problem(e, at: "broker.cert_file")).line == 6)
    }

    @Test func duplicateSimulatorID() throws {
        let e = problems(minimalYAML + """

            simulators:
              - {profile: thermometer, patient: P-1, rate: 1, id: t-1}
              - profile: thermometer
                patient: P-2
                rate: 1
                id: t-1
              - {profile: blood-pressure, patient: P-3, rate: 1, id: sim-thermometer-4}
              - {profile: thermometer, patient: P-4, rate: 1}
            """)
        let p = try #require(problem(e, at: "simulators[1].id"))
        #expect(p.line == 10)
        #expect(p.message == "duplicate simulator id 't-1' (also used by simulators[0])")
        // A generated default id colliding with an explicit one is caught too.
        let generated = try #require(problem(e, at: "simulators[3].id"))
        #expect(generated.line == 12)
        #expect(generated.message.contains("sim-thermometer-4"))
    }

    @Test func simulatorMissingRequiredFields() throws {
        let e = problems(minimalYAML + "\nsimulators:\n  - patient: \"\"\n    seed: -1\n")
        #expect(try #require(problem(e, at: "simulators[0].profile")).message.hasPrefix("is required (one of pulse-oximeter"))
        #expect(try #require(problem(e, at: "simulators[0].patient")).message == "must not be empty")
        #expect(try #require(problem(e, at: "simulators[0].rate")).line == 6)
        #expect(try #require(problem(e, at: "simulators[0].seed")).message.contains("negative"))
    }

    @Test func badByteSizeString() throws {
        let e = problems(minimalYAML + "\nbuffer:\n  max_bytes: 256 megs\n")
        let p = try #require(problem(e, at: "buffer.max_bytes"))
        #expect(p.line == 6)
        #expect(p.message.contains("like 256MiB"))
        #expect(p.message.contains("\"256 megs\""))
        let small = problems(minimalYAML + "\nbuffer:\n  max_bytes: 1KiB\n")
        #expect(try #require(problem(small, at: "buffer.max_bytes")).message == "must be at least 64KiB, got 1KiB")
        let overflow = problems(minimalYAML + "\nbuffer:\n  max_bytes: 99999999999TiB\n")
        #expect(try #require(problem(overflow, at: "buffer.max_bytes")).line == 6)
    }

    @Test(arguments: [("iomt/+/x", "wildcards"), ("iomt/#", "wildcards"), ("/iomt/x", "start or end"),
                      ("iomt/x/", "start or end"), ("iomt//x", "empty topic level"), ("$SYS/x", "'$'")])
    func badTopicPrefix(prefix: String, words: String) throws {
        let e = problems(minimalYAML + "\n  topic_prefix: \"\(prefix)\"\n")
        let p = try #require(problem(e, at: "broker.topic_prefix"))
        #expect(p.line == 5)
        #expect(p.message.contains(words))
    }

    @Test func unknownOutputFormat() throws {
        let e = problems(minimalYAML + "\noutput:\n  format: hl7v2\n")
        #expect(try #require(problem(e, at: "output.format")).line == 6)
    }

    @Test func manyProblemsAreReportedAtOnceInFileOrder() throws {
        let e = problems("""
            gateway:
              id: "bad id!"
            brokr: x
            broker:
              url: ftp://x
              qos: 0
              keepalive_s: 1
              password_file: /p
            buffer:
              max_bytes: lots
              on_full: explode
            simulators:
              - {profile: toaster, patient: P-1, rate: 1}
            """)
        let paths = e.problems.map(\.keyPath)
        #expect(paths == ["gateway.id", "brokr", "broker.url", "broker.qos", "broker.keepalive_s",
                          "broker.password_file", "buffer.max_bytes", "buffer.on_full", "simulators[0].profile"])
        #expect(e.problems.map { $0.line ?? 0 } == [2, 3, 5, 6, 7, 8, 10, 11, 13])
        #expect(e.description.split(separator: "\n").count == 9)
    }

    @Test func unreadableFileNamesThePath() throws {
        do {
            _ = try AgentConfig.load(path: "/nonexistent/agent.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.description.hasPrefix("/nonexistent/agent.yaml: cannot open the file"))
        }
    }
}

@Suite struct YAMLFeatureTests {
    @Test func secondDocumentIsRefused() throws {
        let e = problems(minimalYAML + "\n---\nx: 1\n")
        let p = try #require(e.problems.first)
        #expect(p.line == 5)
        #expect(p.message.contains("second document"))
    }

    @Test func mergeKeysAreRefusedClearly() throws {
        // Merge keys are refused by the YAML reader itself (a syntax error, so no key path).
        let e = problems("gateway:\n  id: g\nbroker:\n  url: mqtt://h\n  <<: {id: g}\n")
        #expect(e.problems.count == 1)
        let p = try #require(e.problems.first)
        #expect(p.line == 5)
        #expect(p.column == 3)
        #expect(p.message.contains("merge keys"))
    }

    @Test func aliasIsASyntaxError() throws {
        let e = problems("gateway:\n  id: *nope\n")
        #expect(e.problems.first?.line == 2)
        #expect(e.problems.first?.column == 7)
        #expect(e.problems.first?.message.contains("aliases ('*') are not supported") == true)
    }

    @Test func anchorsAndAliasesAreRefused() throws {
        let e = problems("""
            gateway:
              id: hub-001
            broker:
              url: mqtt://127.0.0.1:1883
            simulators:
              - &base {profile: thermometer, patient: P-1, rate: 1}
              - *base
            """)
        #expect(e.problems.count == 1)
        let p = try #require(e.problems.first)
        #expect(p.line == 6)
        #expect(p.column == 5)
        #expect(p.message.contains("anchors ('&') are not supported"))
    }
}

@Suite struct MoreProblemTests {
    @Test(arguments: [
        ("\n  client_id: has space\n", "broker.client_id", 5, "without spaces"),
        ("\n  protocol: mqtt3\n", "broker.protocol", 5, "must be one of mqtt5, mqtt311"),
        ("\nstate_dir: \"\"\n", "state_dir", 5, "must not be empty"),
        ("\nsimulators: {profile: thermometer}\n", "simulators", 5, "must be a list"),
        ("\nsimulators:\n  -\n", "simulators[0]", 6, "is empty"),
        ("\nsimulators:\n  - {profile: thermometer, patient: P-1, rate: \"1\"}\n", "simulators[0].rate", 6, "must be a number, got a string"),
        ("\nsimulators:\n  - {profile: thermometer, patient: P-1, rate: 1, seed: 1.5}\n", "simulators[0].seed", 6, "must be an integer"),
        ("\nsimulators:\n  - {profile: thermometer, patient: P-1, rate: 1, id: \"a/b\"}\n", "simulators[0].id", 6, "may contain only"),
        ("\nbuffer:\n  backlog_share: 0.99\n", "buffer.backlog_share", 6, "between 0.05 and 0.95, got 0.99"),
        ("\nbuffer:\n  commit_max_batch: 10001\n", "buffer.commit_max_batch", 6, "between 1 and 10000"),
        ("\nbuffer:\n  order: lifo\n", "buffer.order", 6, "must be one of fifo, live-first"),
        ("\nlog: [info]\n", "log", 5, "must be a mapping"),
        ("\n  username:\n    name: x\n", "broker.username", 5, "must be a single value, got a mapping"),
    ])
    func specificProblem(suffix: String, keyPath: String, line: Int, words: String) throws {
        // (minimalYAML ends inside the broker mapping: a suffix starting "\n  " adds broker keys.)
        let e = problems(minimalYAML + suffix)
        let p = try #require(problem(e, at: keyPath))
        #expect(p.line == line)
        #expect(p.message.contains(words), "\(p.message)")
    }
}

@Test func duplicateBrokerURLInList() throws {
    let e = problems("gateway:\n  id: g\nbroker:\n  url:\n    - mqtt://a\n    - mqtt://b:1883\n    - \"mqtt://a:1883\"\n")
    let p = try #require(problem(e, at: "broker.url[2]"))
    #expect(p.line == 7)
    #expect(p.message == "mqtt://a:1883 is listed twice")
}

@Test func controlCharacterIsAReaderErrorWithItsPosition() throws {
    let e = problems("gateway:\n  id: g\u{01}\n")
    let p = try #require(e.problems.first)
    #expect(e.problems.count == 1)
    #expect(p.line == 2)
    #expect(p.column == 8)
    #expect(p.message.contains("control characters"))
}
