import Foundation
import IoMTCore
import IoMTSerial
@testable import IoMTSerialPort
import IoMTSerialSimulators
import Testing

@Suite("Serial port on a pseudo-terminal")
struct SerialPortTests {
    @Test("raw termios: no XON/XOFF, CLOCAL|CREAD, 8O1 at 19200, exclusive (TIOCEXCL)")
    func rawExclusive() throws {
        let pty = try PtyDevice()
        defer { pty.unplug() }
        let port = try SerialPort(path: pty.slavePath, settings: LineSettings(baud: 19200, parity: .odd))
        var t = termios()
        #expect(tcgetattr(port.fd, &t) == 0)
        #expect(t.c_iflag & tcflag_t(IXON | IXOFF | IXANY) == 0)
        #expect(t.c_lflag & tcflag_t(ICANON | ECHO) == 0)
        #expect(t.c_cflag & tcflag_t(CLOCAL | CREAD) == tcflag_t(CLOCAL | CREAD))
        #expect(t.c_cflag & tcflag_t(PARODD) != 0)  // a pty keeps PARODD but clears PARENB (pty_set_termios)
        #expect(t.c_cflag & tcflag_t(CSIZE) == tcflag_t(CS8))
        #expect(t.c_cflag & tcflag_t(CSTOPB) == 0)
        #expect(cfgetispeed(&t) == speed_t(B19200))
        var exclusive: Int32 = 0
        #expect(ioctl(port.fd, 0x8004_5440 /* TIOCGEXCL */, &exclusive) == 0)
        #expect(exclusive == 1)
    }

    @Test("termios for 8O1, 8E1, 7E2 with RTS/CTS, 8N1: parity checked and bad bytes dropped, no XON/XOFF ever",
          arguments: [LineSettings(baud: 19200, parity: .odd), LineSettings(baud: 9600, parity: .even),
                      LineSettings(baud: 4800, dataBits: 7, parity: .even, stopBits: 2, hardwareFlowControl: true),
                      LineSettings(baud: 115200)])
    func termiosFlags(_ s: LineSettings) {
        var t = termios()
        t.c_iflag = tcflag_t(IXON | IXOFF | ICRNL | PARMRK)
        t.c_cflag = tcflag_t(CS7 | PARENB | CSTOPB)
        t.c_lflag = tcflag_t(ICANON | ECHO | ISIG)
        #expect(SerialPort.apply(s, to: &t))
        #expect(t.c_iflag & tcflag_t(IXON | IXOFF | IXANY | ICRNL | PARMRK) == 0)
        #expect(t.c_lflag & tcflag_t(ICANON | ECHO | ISIG) == 0)
        #expect(t.c_cflag & tcflag_t(CLOCAL | CREAD) == tcflag_t(CLOCAL | CREAD))
        #expect((t.c_cflag & tcflag_t(PARENB) != 0) == (s.parity != .none))
        #expect((t.c_cflag & tcflag_t(PARODD) != 0) == (s.parity == .odd))
        #expect((t.c_iflag & tcflag_t(INPCK | IGNPAR) != 0) == (s.parity != .none))
        #expect(t.c_cflag & tcflag_t(CSIZE) == tcflag_t(s.dataBits == 7 ? CS7 : CS8))
        #expect((t.c_cflag & tcflag_t(CSTOPB) != 0) == (s.stopBits == 2))
        #expect((t.c_cflag & tcflag_t(0o20000000000) != 0) == s.hardwareFlowControl)
        #expect(cfgetospeed(&t) == SerialPort.speed(s.baud))
        var bad = termios()
        #expect(!SerialPort.apply(LineSettings(baud: 12345), to: &bad))
    }

    @Test("0x11 and 0x13 data bytes come through (XON/XOFF would eat them)")
    func xonXoffBytesSurvive() throws {
        let pty = try PtyDevice()
        defer { pty.unplug() }
        let port = try SerialPort(path: pty.slavePath, settings: LineSettings(baud: 9600))
        let sent: [UInt8] = [0x11, 0x13, 0x00, 0xFF, 0x0D, 0x0A, 0x03, 0x1C]
        _ = sent.withUnsafeBytes { write(pty.masterFD, $0.baseAddress, $0.count) }
        var p = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 2000) == 1)
        var buffer = [UInt8](repeating: 0, count: 64)
        guard case .bytes(let n) = port.read(into: &buffer) else { Issue.record("no bytes"); return }
        #expect(Array(buffer[0..<n]) == sent)
    }

    @Test("unplug (master closed) reads as gone, not as a quiet port")
    func unplugIsGone() throws {
        let pty = try PtyDevice()
        let port = try SerialPort(path: pty.slavePath, settings: LineSettings(baud: 9600))
        pty.unplug()
        var p = pollfd(fd: port.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 2000) == 1)
        var buffer = [UInt8](repeating: 0, count: 64)
        guard case .gone(let error) = port.read(into: &buffer) else { Issue.record("not gone"); return }
        #expect(error.isGone)
    }

    @Test("fake sysfs: ttyUSB and ttyACM devices with vendor, product, serial; match by identity")
    func sysfs() throws {
        let root = temporaryDirectory()
        let fs = FakeSysfs(root: root)
        try fs.add(tty: "ttyUSB7", vendor: "10c4", product: "ea60", serial: "0001", usbSerialPortDir: true)
        try fs.add(tty: "ttyACM3", vendor: "1c3d", product: "0003", serial: nil, usbSerialPortDir: false)
        let scanner = SysfsScanner(root: root + "/sys", devRoot: root + "/dev")
        let devices = scanner.devices()
        #expect(devices.map(\.devicePath) == [root + "/dev/ttyACM3", root + "/dev/ttyUSB7"])
        #expect(devices.last?.vendorID == 0x10c4)
        #expect(devices.last?.productID == 0xea60)
        #expect(devices.last?.serial == "0001")
        #expect(devices.first?.serial == nil)
        #expect(scanner.find(USBMatch(vendorID: 0x10c4, productID: 0xea60, serial: "0001")) == root + "/dev/ttyUSB7")
        #expect(scanner.find(USBMatch(vendorID: 0x10c4, serial: "0002")) == nil)
        #expect(scanner.find(USBMatch(vendorID: 0x1c3d)) == root + "/dev/ttyACM3")
    }
}

/// Builds a sysfs-like tree: class/tty/<name>/device → the USB interface (ttyACM) or the
/// usb-serial port directory below it (ttyUSB), whose USB device has idVendor/idProduct/serial.
struct FakeSysfs {
    var root: String
    func add(tty: String, vendor: String, product: String, serial: String?, usbSerialPortDir: Bool) throws {
        let fm = FileManager.default
        let usb = root + "/sys/devices/pci0000:00/usb1/1-\(tty.count)\(tty.last!)"
        let interface = usb + "/" + (usb as NSString).lastPathComponent + ":1.0"
        let deviceDir = usbSerialPortDir ? interface + "/" + tty : interface
        try fm.createDirectory(atPath: deviceDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/sys/class/tty/" + tty, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try (vendor + "\n").write(toFile: usb + "/idVendor", atomically: true, encoding: .utf8)
        try (product + "\n").write(toFile: usb + "/idProduct", atomically: true, encoding: .utf8)
        if let serial { try (serial + "\n").write(toFile: usb + "/serial", atomically: true, encoding: .utf8) }
        try "00\n".write(toFile: interface + "/bInterfaceNumber", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root + "/sys/class/tty/" + tty + "/device", withDestinationPath: deviceDir)
    }
}
