@testable import IoMTAgent
import IoMTConfig
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import Logging
import Testing

@Suite struct SerialSourcesTests {
    @Test func everyConfigProfileNameIsABuiltInProfile() {
        for name in SerialProfileName.allCases {
            #expect(SerialProfile.named(name.rawValue) != nil, "\(name.rawValue)")
        }
        #expect(Set(SerialProfile.builtIn.map(\.name)) == Set(SerialProfileName.allCases.map(\.rawValue)))
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
        let sources = makeSerialSources(config: config, clock: SystemWallClock(), logger: Logger(label: "test"))
        #expect(sources.map(\.sourceID) == ["ox-1", "ox-2"])
        let first = try #require(sources[0] as? SerialSource)
        #expect(first.configuration.port == .path("/dev/iomt/oximeter-1"))
        #expect(first.configuration.lineSettings == nil)  // the profile's 19200 8O1, then 4800 8N1
        #expect(first.configuration.profile.name == "contec-cms50-legacy")
        #expect(first.configuration.watermarks?.directory == "/var/lib/iomt-test/serial")
        let second = try #require(sources[1] as? SerialSource)
        #expect(second.configuration.port == .usb(USBMatch(vendorID: 0x10c4, productID: 0xea60, serial: "0001")))
        #expect(second.configuration.lineSettings == LineSettings(baud: 4800, dataBits: 8, parity: .none, stopBits: 1))
        #expect(second.configuration.patientID == "P-2")
    }
}
