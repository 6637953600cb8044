import Foundation
import Testing

/// Static checks of `udev/70-iomt-serial.rules` (udevadm cannot run here).
@Suite struct UdevRulesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func ruleLines(_ file: String) throws -> [String] {
        let text = try String(contentsOf: Self.root.appendingPathComponent("udev/" + file), encoding: .utf8)
        return text.split(separator: "\n").map(String.init).filter { $0.contains("ATTRS{idVendor}") && !$0.hasPrefix("#") }
    }

    @Test func everyDeviceRuleIgnoresModemManagerSetsGroupModeAndSymlink() throws {
        for file in ["70-iomt-serial.rules", "71-iomt-beds.rules.example"] {
            let lines = try ruleLines(file)
            #expect(!lines.isEmpty)
            for line in lines {
                #expect(line.contains("ENV{ID_MM_DEVICE_IGNORE}=\"1\""), "\(line)")
                #expect(line.contains("GROUP=\"iomt\""), "\(line)")
                #expect(line.contains("MODE=\"0660\""), "\(line)")
                #expect(line.contains("SYMLINK+=\"iomt/"), "\(line)")
            }
        }
    }

    @Test func theReferenceBridgesAreCovered() throws {
        let text = try ruleLines("70-iomt-serial.rules").joined(separator: "\n")
        for (vendor, product) in [("10c4", "ea60"), ("067b", "2303"), ("0403", "6001")] {
            #expect(text.contains("ATTRS{idVendor}==\"\(vendor)\", ATTRS{idProduct}==\"\(product)\""), "\(vendor):\(product)")
        }
        #expect(text.contains("ATTRS{idVendor}==\"1c3d\""))
        // ModemManager reads ID_MM_DEVICE_IGNORE in 77-mm-*.rules: ours must sort before.
        #expect("70-iomt-serial.rules" < "77-mm-usb-device-blacklist.rules")
    }
}
