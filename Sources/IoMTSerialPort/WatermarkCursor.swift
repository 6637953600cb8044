import IoMTSerial

/// A OneTouch download watermark as the text the durable buffer keeps per device
/// (`DeviceReading.sourceCursor`), written in the SAME transaction as the reading that moved it:
/// a reconnected meter never yields an accepted record twice, and a record that was not made
/// durable is downloaded again.
///
/// Format (version 1): `onetouch/1`, the meter serial number, `Y M D h m s` of the newest
/// stored record, then the keys of the records at exactly that time, one a line.
public enum WatermarkCursor {
    static let header = "onetouch/1"

    public static func encode(_ mark: OneTouchWatermark, serial: String) -> String {
        let t = mark.time
        var lines = [header, serial, "\(t.year) \(t.month) \(t.day) \(t.hour) \(t.minute) \(t.second)"]
        lines += mark.keysAtTime.sorted()
        return lines.joined(separator: "\n")
    }

    /// The serial number and watermark, or nil for anything else (then everything is
    /// downloaded again: duplicates, never a loss).
    public static func decode(_ text: String) -> (serial: String, mark: OneTouchWatermark)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3, lines[0] == header else { return nil }
        let f = lines[2].split(separator: " ").compactMap { Int($0) }
        guard f.count == 6,
              let t = DeviceDateTime(year: f[0], month: f[1], day: f[2], hour: f[3], minute: f[4], second: f[5])
        else { return nil }
        return (lines[1], OneTouchWatermark(time: t, keysAtTime: Set(lines.dropFirst(3).filter { !$0.isEmpty })))
    }
}
