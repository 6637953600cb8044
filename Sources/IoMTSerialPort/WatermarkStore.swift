#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import IoMTSerial

/// Where the OneTouch download watermark of each meter is kept.
///
/// Issue 4 wants it "stored with the buffer, in the same transaction" as the readings; the
/// buffer module has no such hook yet, so this file store is the stand-in: one small file per
/// meter serial, replaced atomically (write, fsync, rename) after every accepted record. The
/// remaining window: a crash after the buffer committed a record and before this file was
/// renamed downloads that one record again on the next connection (at-least-once, one record).
public struct WatermarkStore: Sendable {
    public var directory: String

    public init(directory: String) { self.directory = directory }

    func file(_ serial: String) -> String {
        let safe = String(serial.unicodeScalars.map { c -> Character in
            (c.properties.isAlphabetic && c.isASCII) || ("0"..."9").contains(c) || c == "-" || c == "_" ? Character(c) : "_"
        })
        return directory + "/onetouch-" + (safe.isEmpty ? "_" : safe) + ".watermark"
    }

    /// The stored watermark, nil if none (or unreadable: then everything is downloaded again,
    /// which duplicates but never loses).
    public func load(serial: String) -> OneTouchWatermark? {
        let fd = open(file(serial), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while data.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data += chunk[0..<n]
        }
        let lines = data.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
        guard let first = lines.first else { return nil }
        let f = first.split(separator: " ").compactMap { Int($0) }
        guard f.count == 6, let t = DeviceDateTime(year: f[0], month: f[1], day: f[2], hour: f[3], minute: f[4], second: f[5])
        else { return nil }
        return OneTouchWatermark(time: t, keysAtTime: Set(lines.dropFirst()))
    }

    public func save(_ mark: OneTouchWatermark, serial: String) throws(SerialPortError) {
        _ = mkdir(directory, 0o750)
        let path = file(serial)
        let tmp = path + ".tmp"
        let t = mark.time
        var text = "\(t.year) \(t.month) \(t.day) \(t.hour) \(t.minute) \(t.second)\n"
        for k in mark.keysAtTime.sorted() { text += k + "\n" }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw SerialPortError("open", path: tmp, code: errno) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let ok = n == bytes.count && fsync(fd) == 0
        let e = errno
        close(fd)
        guard ok else { throw SerialPortError("write", path: tmp, code: e) }
        guard rename(tmp, path) == 0 else { throw SerialPortError("rename", path: path, code: errno) }
    }
}
