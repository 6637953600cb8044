// swift-tools-version:6.1
import PackageDescription

// Module layout (lightest first):
//   IoMTCore     pure value types: readings, ids, time, byte reading. No syscalls beyond the clock and RNG.
//   IoMTYAML     a strict YAML subset: the parser the configuration is read with (pure; no Foundation).
//   IoMTConfig   YAML configuration with key-path errors (on IoMTYAML).
//   IoMTBuffer   the durable store-and-forward buffer (SQLite, WAL).
//   IoMTUplink   the MQTT client (libmosquitto).
//   IoMTSources  reading sources (simulators now; serial and BLE later).
//   IoMTAgent    wiring: ingest, forwarder, status, the run loop.
//   iomt-agent   a thin command-line executable over IoMTAgent.
let package = Package(
    name: "iomt-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "iomt-agent", targets: ["iomt-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // SMP cryptography (P-256 ECDH, AES-CMAC, one-block AES) for LE pairing (issue 5).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        .systemLibrary(
            name: "CBluetooth",
            pkgConfig: "bluez",
            providers: [.apt(["libbluetooth-dev"])]
        ),
        .target(name: "IoMTCore"),
        // The strict YAML subset the configuration is written in (pure; no Foundation).
        .target(name: "IoMTYAML"),
        // One detached-thread starter for the blocking readers (serial, HCI, control socket, tests).
        .target(name: "IoMTThreads"),
        .target(
            name: "IoMTConfig",
            dependencies: ["IoMTCore", "IoMTYAML", "IoMTSources"]
        ),
        .target(
            name: "IoMTBuffer",
            dependencies: ["IoMTCore", "CSQLite", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "IoMTUplink",
            dependencies: ["IoMTCore", "CMosquitto", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "IoMTSources", dependencies: ["IoMTCore"]),
        // Issue 9: the alert engine (pure: rules, hysteresis, deadlines; time is an input).
        .target(name: "IoMTAlerts", dependencies: ["IoMTCore"]),
        // Serial medical devices (issue 4): pure decoders, then the termios/pty/sysfs side.
        .target(name: "IoMTSerial", dependencies: ["IoMTCore"]),
        .target(
            name: "IoMTSerialPort",
            dependencies: ["IoMTCore", "IoMTSerial", "IoMTThreads", .product(name: "Logging", package: "swift-log")]
        ),
        // Device simulators (frame encoders and pty players) for tests, benchmarks and fuzzing.
        .target(name: "IoMTSerialSimulators", dependencies: ["IoMTCore", "IoMTSerial"]),
        // libFuzzer target for the decoders: swift build -c release --sanitize=fuzzer --product iomt-serial-fuzz
        .executableTarget(name: "iomt-serial-fuzz", dependencies: ["IoMTCore", "IoMTSerial"]),
        // Decode throughput and the 8-oximeter CPU benchmark (BENCHMARKS.md).
        .executableTarget(name: "iomt-serial-bench",
                          dependencies: ["IoMTCore", "IoMTSerial", "IoMTSerialPort", "IoMTSerialSimulators",
                                         .product(name: "Logging", package: "swift-log")]),
        // Pure decoders for the Bluetooth SIG health profiles and the FHIR R4 output (issue 6).
        .target(name: "IoMTHealthProfiles", dependencies: ["IoMTCore"]),
        .target(name: "IoMTFHIR", dependencies: ["IoMTCore", "IoMTHealthProfiles"]),
        // Bluetooth LE host (issue 5), strictly layered like Bumble:
        //   IoMTHCI          pure: addresses, UUIDs, H4 framing, HCI commands/events, ACL credits and
        //                    fragmentation, command flow, advertising data, btsnoop records.
        //   IoMTHCITransport I/O: H4 over TCP and UART, the Linux HCI user channel, btsnoop file tap.
        //   IoMTATT          pure: L2CAP LE fixed channels and signalling, ATT PDUs, GATT client procedures.
        //   IoMTSMP          pure + swift-crypto: SMP PDUs, the toolbox (f4 f5 f6 g2 ah c1 s1), pairing.
        //   IoMTBluetooth    the host: one actor per link, scanning, connecting, bonding, reconnection.
        .target(name: "IoMTHCI", dependencies: ["IoMTCore"]),
        .target(
            name: "IoMTHCITransport",
            dependencies: ["IoMTCore", "IoMTHCI", "IoMTThreads", "CBluetooth", .product(name: "Logging", package: "swift-log")]
        ),
        .target(name: "IoMTATT", dependencies: ["IoMTCore", "IoMTHCI"]),
        .target(
            name: "IoMTSMP",
            dependencies: [
                "IoMTCore", "IoMTHCI",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "IoMTBluetooth",
            dependencies: [
                "IoMTCore", "IoMTHCI", "IoMTHCITransport", "IoMTATT", "IoMTSMP", "IoMTHealthProfiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Bluetooth benchmark against a running Bumble world (scripts/ble-bench.sh, BENCHMARKS.md).
        .executableTarget(name: "iomt-ble-bench",
                          dependencies: ["IoMTCore", "IoMTHCI", "IoMTHCITransport", "IoMTATT", "IoMTBluetooth",
                                         .product(name: "Logging", package: "swift-log")]),
        // Issue 7: the paired-device registry with patient binding and the audit log; the control
        // socket protocol between the CLI and the daemon.
        .target(name: "IoMTRegistry", dependencies: ["IoMTCore", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")]),
        .target(name: "IoMTControl", dependencies: ["IoMTCore", "IoMTRegistry", "IoMTThreads", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "IoMTAgent",
            dependencies: [
                "IoMTCore", "IoMTConfig", "IoMTBuffer", "IoMTUplink", "IoMTSources", "IoMTSerialPort", "IoMTFHIR",
                "IoMTBluetooth", "IoMTHCI", "IoMTHCITransport", "IoMTRegistry", "IoMTControl", "IoMTSerialSimulators",
                "IoMTHealthProfiles", "IoMTAlerts",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // The benchmark (`iomt-bench`, a separate executable so the daemon carries none of it; BENCHMARKS.md): drives the real pipeline against a real
        // mosquitto, and raw-publisher, the plain libmosquitto baseline (also its counting subscriber).
        .target(
            name: "IoMTBench",
            dependencies: [
                "IoMTCore", "IoMTConfig", "IoMTBuffer", "IoMTUplink", "IoMTSources", "IoMTAgent", "CSQLite",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "iomt-bench",
            dependencies: ["IoMTBench", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "raw-publisher",
            linkerSettings: [.linkedLibrary("mosquitto")]
        ),
        .executableTarget(
            name: "iomt-agent",
            dependencies: [
                "IoMTAgent",
                "IoMTControl",
                "IoMTRegistry",
                "IoMTConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The daemon's resident set on a Pi (issue 3: under 25 MB). In a release build:
            // lld packs the ~1.4 MB of relative relocations of the Swift metadata into a few KB
            // (DT_RELR, glibc >= 2.36), and the executable stops exporting its ~60k symbols
            // (the static Swift runtime's link arguments ask for -export-dynamic; nothing here
            // looks symbols up by name). Both pages were touched at every start: 22.3 -> 19.3 MB
            // idle, measured with smaps (BENCHMARKS.md, section 4).
            linkerSettings: [
                .unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                             .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        // Helpers for tests only: start a real mosquitto on loopback, temp dirs, child processes.
        .target(name: "IoMTTestSupport", dependencies: ["IoMTCore", "IoMTUplink", "IoMTThreads", "CMosquitto"]),
        .testTarget(name: "IoMTCoreTests", dependencies: ["IoMTCore"]),
        .testTarget(name: "IoMTYAMLTests", dependencies: ["IoMTYAML", "IoMTConfig", "IoMTCore"]),
        .testTarget(name: "IoMTConfigTests", dependencies: ["IoMTConfig"]),
        .testTarget(name: "IoMTSourcesTests", dependencies: ["IoMTSources"]),
        .testTarget(name: "IoMTAlertsTests", dependencies: ["IoMTAlerts", "IoMTCore"]),
        .testTarget(name: "IoMTSerialTests", dependencies: ["IoMTSerial", "IoMTSerialSimulators"]),
        .testTarget(name: "IoMTSerialPortTests",
                    dependencies: ["IoMTSerialPort", "IoMTSerial", "IoMTSerialSimulators"]),
        .testTarget(name: "IoMTHCITests", dependencies: ["IoMTHCI"]),
        .testTarget(name: "IoMTHCITransportTests", dependencies: ["IoMTHCITransport", "IoMTHCI", "IoMTTestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "IoMTATTTests", dependencies: ["IoMTATT", "IoMTHCI"]),
        .testTarget(name: "IoMTSMPTests", dependencies: ["IoMTSMP", "IoMTHCI"]),
        .testTarget(name: "IoMTBluetoothTests", dependencies: ["IoMTBluetooth", "IoMTTestSupport",
                                                               .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "IoMTRegistryTests", dependencies: ["IoMTRegistry", "IoMTTestSupport"]),
        .testTarget(name: "IoMTControlTests", dependencies: ["IoMTControl", "IoMTRegistry", "IoMTTestSupport",
                                                             .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "IoMTHealthProfilesTests", dependencies: ["IoMTHealthProfiles"]),
        .testTarget(name: "IoMTFHIRTests", dependencies: ["IoMTFHIR", "IoMTHealthProfiles", "IoMTTestSupport"]),
        .testTarget(name: "IoMTBufferTests", dependencies: ["IoMTBuffer", "IoMTTestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "IoMTUplinkTests", dependencies: ["IoMTUplink", "IoMTTestSupport"]),
        .testTarget(name: "IoMTDeployTests", dependencies: ["IoMTTestSupport"]),
        .testTarget(
            name: "IoMTAgentTests",
            dependencies: ["IoMTAgent", "IoMTTestSupport", "IoMTSerialSimulators", "IoMTControl", "IoMTRegistry", "IoMTBuffer", "IoMTCore",
                           "IoMTConfig", "IoMTAlerts", "IoMTFHIR", .product(name: "Logging", package: "swift-log")],
            resources: []
        ),
    ]
)
