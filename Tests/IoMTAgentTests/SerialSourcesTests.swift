@testable import IoMTAgent
import IoMTConfig
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import Logging
import Testing

@Suite struct SerialSourcesTests {
    @Test func everyConfigProfileNameIsABuiltInProfile() {
        for name in SerialProfileName.allCases where name != .line {
            #expect(SerialProfile.named(name.rawValue) != nil, "\(name.rawValue)")
        }
        #expect(Set(SerialProfile.builtIn.map(\.name)) == Set(SerialProfileName.allCases.filter { $0 != .line }.map(\.rawValue)))
    }

    @Test func entriesBecomeSerialSourcesWithMergedLineSettings() throws {
        let config = try AgentConfig.parse(yaml: """
            gateway:
              id: hub-001
            state_dir: /var/lib/iomt-test
            broker:
              url: mqtt://127.0.0.1:1883
            serial:
              - id: ox-1
                profile: contec-cms50-legacy
                patient: P-1
                port: /dev/iomt/oximeter-1
              - id: ox-2
                profile: contec-cms50-legacy
                patient: P-2
                match: {vendor_id: 10c4, product_id: ea60, serial: "0001"}
                baud: 4800
                parity: none
            """, source: "test.yaml")
        let sources = makeSerialSources(config: config, clock: SystemWallClock(), logger: Logger(label: "test"),
                                        cursors: ["ox-1": "onetouch/1\nZSK\n2010 3 8 7 0 0"])
        #expect(sources.map(\.sourceID) == ["ox-1", "ox-2"])
        let first = try #require(sources[0] as? SerialSource)
        #expect(first.configuration.port == .path("/dev/iomt/oximeter-1"))
        #expect(first.configuration.lineSettings == nil)  // the profile's 19200 8O1, then 4800 8N1
        #expect(first.configuration.profile.name == "contec-cms50-legacy")
        #expect(first.configuration.storedCursor == "onetouch/1\nZSK\n2010 3 8 7 0 0")
        let second = try #require(sources[1] as? SerialSource)
        #expect(second.configuration.port == .usb(USBMatch(vendorID: 0x10c4, productID: 0xea60, serial: "0001")))
        #expect(second.configuration.lineSettings == LineSettings(baud: 4800, dataBits: 8, parity: .none, stopBits: 1))
        #expect(second.configuration.patientID == "P-2")
        #expect(second.configuration.storedCursor == nil)
    }
}

@Suite struct LineProfileWiringTests {
    @Test func shippedMasimoLineProfileDecodesLikeTheBuiltInDecoder() throws {
        let root = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let config = try AgentConfig.parse(yaml: """
            gateway: {id: hub-001}
            broker: {url: "mqtt://127.0.0.1:1883"}
            serial:
              - id: rad8-1
                profile: line
                line_profile: /\(root)/deploy/profiles/masimo-ascii1.yaml
                patient: P-1
                port: /dev/iomt/rad8
            """, source: "t.yaml")
        let entry = config.serial[0]
        let profile = try #require(lineProfile(entry, logger: Logger(label: "t")))
        #expect(profile.lineSettings == LineSettings(baud: 9600))
        let lines = [
            "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n",
            "12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n",
            "05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000\r\n",
        ]
        let bytes = Array(lines.joined().utf8)
        var generic = try LineProfileDecoder(profile: profile)
        var builtIn = MasimoASCII1Decoder()
        func observations(_ e: [DecoderEvent]) -> [[Observation]] {
            e.compactMap { if case .reading(let r) = $0 { r.observations } else { nil } }
        }
        let a = observations(generic.feed(bytes)), b = observations(builtIn.feed(bytes))
        #expect(a.count == 3)
        #expect(a == b)
        let sources = makeSerialSources(config: config, clock: SystemWallClock(), logger: Logger(label: "t"))
        #expect((sources.first as? SerialSource)?.configuration.profile.name == "masimo-ascii1-line")
    }
}
