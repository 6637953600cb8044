// The Bluetooth benchmark (BENCHMARKS.md, issue 5): our host as central against a running
// virtual_world.py. Same measurements and JSON shape as scripts/ble/bench_central.py (Bumble's
// own host, the baseline): time from each peripheral's first advertisement to its first
// notification, then notifications counted for --seconds and this process's CPU meanwhile.
//   iomt-ble-bench --port P --peripherals F0:..:01,F0:..:02 [--seconds 5]
#if canImport(Glibc)
import Glibc
#endif
import IoMTATT
import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import Logging
import Synchronization

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

func fail(_ message: String) -> Never {
    print("iomt-ble-bench: \(message)")
    exit(1)
}

var port: UInt16?
var addresses: [BDAddress] = []
var seconds = 5.0
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--port": port = args.popFirst().flatMap { UInt16($0) }
    case "--peripherals": addresses = (args.popFirst() ?? "").split(separator: ",").compactMap { BDAddress(String($0)) }
    case "--seconds": seconds = args.popFirst().flatMap { Double($0) } ?? seconds
    default: fail("unknown argument \(a)")
    }
}
guard let port, !addresses.isEmpty else { fail("usage: iomt-ble-bench --port P --peripherals ADDR[,ADDR...] [--seconds S]") }

final class Counter: Sendable {
    let state = Mutex((counting: false, count: 0))
}

var logger = Logger(label: "ble-bench")
logger.logLevel = .warning
let transport: any HCITransport
do { transport = try openHCITransport(.tcp(host: "127.0.0.1", port: port)) } catch { fail("\(error)") }
var own = secureRandomBytes(6)
own[5] |= 0xC0
let host = BluetoothHost(transport: transport, options: .init(ownAddress: BDAddress(wireBytes: own)!), logger: logger)
do { try await host.start() } catch { fail("\(error)") }
let counter = Counter()
var advToFirst: [Double] = []
var links: [LELink] = []
var listeners: [Task<Void, Never>] = []
for address in addresses {
    // Time from the first advertisement seen once we look for this peripheral.
    let adverts = await host.advertisements()
    try await host.setScanning(true, active: false)
    var seen: UInt64?
    for await ad in adverts where ad.address.address == address {
        seen = UInt64(monotonicMilliseconds())
        break
    }
    guard let seen else { fail("\(address) was never seen advertising") }
    try await host.setScanning(false)
    let link = try await host.connect(to: LEAddress(address, type: .randomDevice), timeoutMs: 10_000)
    _ = try await link.gattRequest(.exchangeMTU)
    guard case .services(let services) = try await link.gattRequest(.discoverPrimaryServices),
          let hrs = services.first(where: { $0.uuid == BluetoothUUID(0x180D) }),
          case .characteristics(let chars) = try await link.gattRequest(.discoverCharacteristics(start: hrs.start, end: hrs.end)),
          let m = chars.first(where: { $0.uuid == BluetoothUUID(0x2A37) }),
          case .descriptors(let ds) = try await link.gattRequest(.discoverDescriptors(start: m.valueHandle + 1, end: hrs.end)),
          let cccd = ds.first(where: { $0.uuid == BluetoothUUID(0x2902) }) else { fail("\(address): no heart rate measurement") }
    let (firstStream, firstCont) = AsyncStream.makeStream(of: UInt64.self)
    let events = link.events
    listeners.append(Task {
        var first = true
        for await e in events {
            if case .notification = e {
                if first { firstCont.yield(UInt64(monotonicMilliseconds())); firstCont.finish(); first = false }
                counter.state.withLock { if $0.counting { $0.count += 1 } }
            }
        }
    })
    _ = try await link.gattRequest(.subscribe(cccdHandle: cccd.handle, indications: false))
    var firstAt: UInt64 = 0
    for await t in firstStream { firstAt = t }
    advToFirst.append(Double(firstAt - seen))
    links.append(link)
}
let cpu0 = cpuSeconds(), t0 = monotonicMilliseconds()
counter.state.withLock { $0.counting = true }
try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
counter.state.withLock { $0.counting = false }
let cpu1 = cpuSeconds(), t1 = monotonicMilliseconds()
let n = counter.state.withLock { $0.count }
let elapsed = Double(t1 - t0) / 1000
var w = JSONWriter()
w.beginObject()
w.key("host"); w.string("iomt")
w.key("peripherals"); w.int(Int64(addresses.count))
w.key("notifications"); w.int(Int64(n))
w.key("seconds"); w.number(elapsed)
w.key("per_second"); w.number(Double(n) / elapsed)
w.key("cpu_ms_per_1000"); w.number((cpu1 - cpu0) * 1000 / Double(max(n, 1)) * 1000)
w.key("adv_to_first_ms"); w.beginArray(); for v in advToFirst { w.number(v) }; w.endArray()
w.endObject()
print(String(decoding: w.bytes, as: UTF8.self))
for l in links { await l.disconnect() }
await host.shutdown()
exit(0)
