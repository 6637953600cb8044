import IoMTHCI
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Appends btsnoop records (datalink H4) to a file, mode 0600 since it can hold keys. The file
/// header is written when the file is new or empty. Writes from the sender and the reader thread
/// are serialized by a Mutex; a write error disables the tap (the transport keeps working).
final class SnoopFile: Sendable {
    private let fd: Mutex<Int32>
    let path: String

    init(path: String) throws(HCITransportError) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .errno("btsnoop \(path): open", errno) }
        _ = fchmod(fd, 0o600)
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw .errno("btsnoop \(path): stat", e)
        }
        if st.st_size == 0 {
            let h = BTSnoop.fileHeader
            guard h.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == h.count else {
                let e = errno
                _ = Glibc.close(fd)
                throw .errno("btsnoop \(path): write header", e)
            }
        }
        self.fd = Mutex(fd)
        self.path = path
    }

    func append(_ packet: HCIPacket, sent: Bool) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let micros = UInt64(max(0, ts.tv_sec)) * 1_000_000 + UInt64(max(0, ts.tv_nsec)) / 1_000
        let rec = BTSnoop.record(packet, sent: sent, timestampMicrosSince1970: micros)
        fd.withLock { fd in
            guard fd >= 0 else { return }
            let n = rec.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n != rec.count {
                _ = Glibc.close(fd)
                fd = -1
            }
        }
    }

    deinit {
        fd.withLock { fd in if fd >= 0 { _ = Glibc.close(fd) } }
    }
}
