#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which USB device a `match:` entry wants (hex ids as in `lsusb`, serial as the device reports it).
public struct USBMatch: Hashable, Sendable, CustomStringConvertible {
    public var vendorID: UInt16
    public var productID: UInt16?
    public var serial: String?
    public init(vendorID: UInt16, productID: UInt16? = nil, serial: String? = nil) {
        self.vendorID = vendorID
        self.productID = productID
        self.serial = serial
    }
    public var description: String {
        var s = hex4(vendorID)
        if let productID { s += ":" + hex4(productID) }
        if let serial { s += " serial \(serial)" }
        return s
    }
}

func hex4(_ v: UInt16) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 4 - s.count) + s
}

/// A tty that belongs to a USB device, as read from sysfs.
public struct USBSerialDevice: Hashable, Sendable {
    /// `/dev/ttyUSB0`, `/dev/ttyACM0`.
    public var devicePath: String
    public var vendorID: UInt16
    public var productID: UInt16
    public var serial: String?
    /// The USB interface number (several ttys on one multi-port adapter).
    public var interface: String?

    public func matches(_ m: USBMatch) -> Bool {
        vendorID == m.vendorID && (m.productID.map { $0 == productID } ?? true)
            && (m.serial.map { $0 == serial } ?? true)
    }
}

/// Reads USB serial devices from sysfs: every `<root>/class/tty/<name>` whose `device` link leads
/// (through the interface directory) to a USB device directory with `idVendor`/`idProduct`
/// (and `serial` when the device has one). `root` is `/sys` except in tests.
public struct SysfsScanner: Sendable {
    public var root: String
    public var devRoot: String

    public init(root: String = "/sys", devRoot: String = "/dev") {
        self.root = root
        self.devRoot = devRoot
    }

    public func devices() -> [USBSerialDevice] {
        let classDir = root + "/class/tty"
        guard let dir = opendir(classDir) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix("ttyUSB") || name.hasPrefix("ttyACM") { names.append(name) }
        }
        var result: [USBSerialDevice] = []
        for name in names.sorted() {
            guard var dir = realPath(classDir + "/" + name + "/device") else { continue }
            let interface = readTrimmed(dir + "/bInterfaceNumber")
            // Walk up from the interface (or usb-serial port) directory to the USB device.
            var found: USBSerialDevice?
            for _ in 0..<4 {
                if let v = readTrimmed(dir + "/idVendor").flatMap({ UInt16($0, radix: 16) }),
                   let p = readTrimmed(dir + "/idProduct").flatMap({ UInt16($0, radix: 16) }) {
                    found = USBSerialDevice(devicePath: devRoot + "/" + name, vendorID: v, productID: p,
                                            serial: readTrimmed(dir + "/serial"),
                                            interface: interface)
                    break
                }
                dir = dirName(dir)
                if dir.count <= 1 { break }
            }
            if let found { result.append(found) }
        }
        return result
    }

    /// The device node of the first device matching `m` (sorted by name), if any.
    public func find(_ m: USBMatch) -> String? {
        devices().first { $0.matches(m) }?.devicePath
    }
}

func dirName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

/// A small sysfs attribute file, trimmed; nil if absent or unreadable.
func readTrimmed(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    var s = String(decoding: buffer[0..<n], as: UTF8.self)
    while let last = s.last, last == "\n" || last == " " || last == "\r" { s.removeLast() }
    return s
}
