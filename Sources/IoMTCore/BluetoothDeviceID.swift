/// The device id the agent gives a Bluetooth LE device when the configuration names none:
/// `ble-` and its identity address as 12 lowercase hex digits, most significant byte first
/// (`C0:FF:EE:00:00:01` → `ble-c0ffee000001`). One definition for the configuration, the
/// registry, the Bluetooth service and the CLI, so the same device never gets two ids.
public enum BluetoothDeviceID {
    static let prefix = "ble-"

    /// From an address written `AA:BB:CC:DD:EE:FF` (or with `-`, or none): nil unless it is
    /// exactly 6 bytes of hex.
    public static func make(address: String) -> String? {
        let hex = address.lowercased().filter { $0 != ":" && $0 != "-" }
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit }) else { return nil }
        return prefix + hex
    }

    /// From the 6 address bytes as they travel over HCI (least significant byte first,
    /// Core v5.4 Vol 4 Part E 5.2).
    public static func make(littleEndianAddress bytes: [UInt8]) -> String {
        var out = prefix
        for b in bytes.reversed() {
            out.append(hexDigit(b >> 4))
            out.append(hexDigit(b & 0x0F))
        }
        return out
    }

    /// The address `AA:BB:CC:DD:EE:FF` a `ble-` id stands for; nil for any other id.
    public static func address(of id: String) -> String? {
        guard id.hasPrefix(prefix) else { return nil }
        let hex = Array(id.dropFirst(prefix.count).uppercased())
        guard hex.count == 12, hex.allSatisfy({ $0.isHexDigit }) else { return nil }
        return stride(from: 0, to: 12, by: 2).map { String(hex[$0..<($0 + 2)]) }.joined(separator: ":")
    }

    private static func hexDigit(_ v: UInt8) -> Character {
        Character(Unicode.Scalar(v < 10 ? 48 + v : 87 + v))
    }
}
