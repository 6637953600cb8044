import Testing
@testable import IoMTConfig

/// The `serial:` section (issue 4).
@Suite struct SerialConfigTests {
    @Test func portAndMatchEntriesWithDefaultsAndOverrides() throws {
        let c = try parseValid(minimalYAML + """

            serial:
              - profile: contec-cms50-v7
                patient: P-1
                port: /dev/iomt/oximeter-1
              - id: nonin-bed-4
                profile: nonin-df2
                patient: P-2
                match:
                  vendor_id: 1c3d
                  product_id: 0003
                  serial: "A1B2"
                baud: 19200
                parity: even
                data_bits: 7
                stop_bits: 2
                rtscts: true
                reconnect_min_ms: 100
                reconnect_max_ms: 2000
            """)
        #expect(c.serial.count == 2)
        #expect(c.serial[0] == AgentConfig.Serial(id: "serial-contec-cms50-v7-1", profile: .contecV7, patient: "P-1",
                                                  port: .path("/dev/iomt/oximeter-1")))
        let n = c.serial[1]
        #expect(n.id == "nonin-bed-4")
        #expect(n.port == .usb(vendorID: 0x1c3d, productID: 0x0003, serial: "A1B2"))
        #expect(n.baud == 19200 && n.parity == .even && n.dataBits == 7 && n.stopBits == 2 && n.hardwareFlowControl == true)
        #expect(n.reconnectMinMilliseconds == 100 && n.reconnectMaxMilliseconds == 2000)
        #expect(c.renderSummary().contains("  - nonin-bed-4: nonin-df2, patient P-2, match usb 1c3d:0003 serial A1B2, baud 19200"))
    }

    @Test func absentSectionIsEmpty() throws {
        #expect(try parseValid(minimalYAML).serial.isEmpty)
    }

    @Test func portAndMatchTogetherOrNeither() throws {
        let e = problems(minimalYAML + """

            serial:
              - profile: nonin-df2
                patient: P-1
                port: /dev/ttyUSB0
                match: {vendor_id: 1c3d}
              - profile: nonin-df2
                patient: P-2
            """)
        let both = try #require(problem(e, at: "serial[0].match"))
        #expect(both.line == 9)
        #expect(both.message.contains("not both"))
        let neither = try #require(problem(e, at: "serial[1].port"))
        #expect(neither.message.contains("is required, or match"))
    }

    @Test func unknownKeysAreErrorsWithSuggestions() throws {
        let e = problems(minimalYAML + """

            serial:
              - profile: masimo-ascii1
                patient: P-1
                port: /dev/iomt/rad8
                xonxoff: true
                bauds: 9600
              - profile: masimo-ascii1
                patient: P-1
                match:
                  vendor: 0403
            """)
        #expect(try #require(problem(e, at: "serial[0].xonxoff")).line == 9)
        #expect(try #require(problem(e, at: "serial[0].bauds")).message.contains("did you mean 'baud'?"))
        let vendor = try #require(problem(e, at: "serial[1].match.vendor"))
        #expect(vendor.line == 14)
        #expect(vendor.message.contains("vendor_id"))
        #expect(problem(e, at: "serial[1].match.vendor_id")?.message.contains("is required") == true)
    }

    @Test func badValuesNameLineAndKey() throws {
        let e = problems(minimalYAML + """

            serial:
              - profile: contec-cms50
                patient: P-1
                port: dev/ttyUSB0
                baud: 12345
                parity: mark
                stop_bits: 3
                rtscts: yes
              - profile: nonin-df8
                patient: P-2
                match: {vendor_id: 12345}
                reconnect_min_ms: 5000
                reconnect_max_ms: 1000
            """)
        #expect(try #require(problem(e, at: "serial[0].profile")).message.contains("contec-cms50-v7"))
        #expect(try #require(problem(e, at: "serial[0].port")).line == 8)
        #expect(try #require(problem(e, at: "serial[0].baud")).message.contains("115200"))
        #expect(try #require(problem(e, at: "serial[0].parity")).line == 10)
        #expect(try #require(problem(e, at: "serial[0].stop_bits")).message == "must be 1 or 2, got 3")
        #expect(try #require(problem(e, at: "serial[0].rtscts")).message.contains("true or false"))
        #expect(try #require(problem(e, at: "serial[1].match.vendor_id")).line == 15)
        #expect(try #require(problem(e, at: "serial[1].reconnect_max_ms")).line == 17)
    }

    @Test func duplicateIDsAndPortsAcrossEntriesAndSimulators() throws {
        let e = problems(minimalYAML + """

            simulators:
              - id: bed-1
                profile: thermometer
                patient: P-1
                rate: 1
            serial:
              - id: bed-1
                profile: nonin-df2
                patient: P-1
                port: /dev/iomt/a
              - id: bed-2
                profile: nonin-df2
                patient: P-1
                port: /dev/iomt/b
              - id: bed-3
                profile: nonin-df7
                patient: P-1
                port: /dev/iomt/b
            """)
        #expect(try #require(problem(e, at: "serial[0].id")).message.contains("also used by a simulator"))
        let dup = try #require(problem(e, at: "serial[2].port"))
        #expect(dup.line == 22)
        #expect(dup.message.contains("serial[1]"))
    }

    @Test func notAList() throws {
        let e = problems(minimalYAML + "\nserial:\n  profile: nonin-df2\n")
        #expect(try #require(problem(e, at: "serial")).message.contains("must be a list"))
    }
}
