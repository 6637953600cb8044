import IoMTSources

/// The agent's configuration, read from YAML (`deploy/agent.yaml` documents every key).
///
/// Build one with ``parse(yaml:source:)`` or ``load(path:)``: both check every key and
/// report all problems at once, each with its key path and line (``ConfigErrors``).
/// Every value here has been validated; optional settings absent from the file carry
/// their documented defaults.
///
/// The configuration holds no secrets: the broker password is read by the uplink from
/// ``Broker/passwordFile`` when it connects.
public struct AgentConfig: Sendable, Equatable {
    /// `gateway`: who this gateway is.
    public var gateway: Gateway
    /// `state_dir`: where the durable buffer and other state live. Default `/var/lib/iomt-agent`.
    public var stateDir: String
    /// `log`: logging settings.
    public var log: Log
    /// `broker`: the hospital MQTT broker (or cluster) and how to talk to it.
    public var broker: Broker
    /// `buffer`: the durable store-and-forward buffer.
    public var buffer: Buffer
    /// `output`: how readings are rendered on the wire.
    public var output: Output
    /// `simulators`: simulated devices (may be empty).
    public var simulators: [Simulator]
    /// `serial`: USB-serial medical devices (may be empty).
    public var serial: [Serial]
    /// `bluetooth`: the LE controller and the configured wearables (nil: no Bluetooth).
    public var bluetooth: Bluetooth?
    /// `security.key_file`: the at-rest key (64 hex digits, a root- or agent-only file) that seals
    /// the bond store (issue 8). Under systemd, `LoadCredential=state-key:...` provides it as
    /// `$CREDENTIALS_DIRECTORY/state-key` instead. Nil and no credential: nothing is sealed.
    public var securityKeyFile: String?
    /// `control`: the daemon's control socket (the CLI talks to the daemon over it).
    public var control: Control
    /// `alerts`: clinical and technical alerts (issue 9). Off by default.
    public var alerts: Alerts

    /// Creates a configuration from already validated parts (``parse(yaml:source:)`` is the
    /// checked way in).
    public init(gateway: Gateway, stateDir: String = AgentConfig.defaultStateDir, log: Log = Log(),
                broker: Broker, buffer: Buffer = Buffer(), output: Output = Output(),
                simulators: [Simulator] = [], serial: [Serial] = [], bluetooth: Bluetooth? = nil,
                control: Control = Control(), securityKeyFile: String? = nil, alerts: Alerts = Alerts()) {
        self.alerts = alerts
        self.securityKeyFile = securityKeyFile
        self.bluetooth = bluetooth
        self.gateway = gateway
        self.stateDir = stateDir
        self.log = log
        self.broker = broker
        self.buffer = buffer
        self.output = output
        self.simulators = simulators
        self.serial = serial
        self.control = control
    }

    /// The default `state_dir`.
    public static let defaultStateDir = "/var/lib/iomt-agent"

    /// `gateway`: the identity of this gateway.
    public struct Gateway: Sendable, Equatable {
        /// `gateway.id`: 1-64 characters from `[A-Za-z0-9._-]`. Required.
        public var id: String
        /// Creates the gateway settings.
        public init(id: String) { self.id = id }
    }

    /// `control`: the daemon's control socket (docs/control-protocol.md).
    public struct Control: Sendable, Equatable {
        /// `control.socket`: the Unix socket path. Default `/run/iomt-agent/control.sock`.
        public var socket: String
        /// `control.group`: members of this group may use the socket (besides root and the
        /// agent's user). Default `iomt`. If the group does not exist, only those two can.
        public var group: String
        public static let defaultSocket = "/run/iomt-agent/control.sock"
        public static let defaultGroup = "iomt"
        /// Creates the control settings with the documented defaults.
        public init(socket: String = Control.defaultSocket, group: String = Control.defaultGroup) {
            self.socket = socket
            self.group = group
        }
    }

    /// `log`: logging settings.
    public struct Log: Sendable, Equatable {
        /// `log.level`. Default `info`.
        public var level: LogLevel
        /// Creates the log settings.
        public init(level: LogLevel = .info) { self.level = level }
    }

    /// `broker`: the MQTT broker and the session with it.
    public struct Broker: Sendable, Equatable {
        /// `broker.url`: one URL, or several to fail over between cluster nodes, tried in order.
        /// Never empty.
        public var endpoints: [BrokerEndpoint]
        /// `broker.client_id`. Default `iomt-<gateway.id>`.
        public var clientID: String
        /// `broker.protocol`. Default `mqtt5`.
        public var protocolVersion: MQTTProtocolVersion
        /// `broker.username`, if the broker wants one.
        public var username: String?
        /// `broker.password_file`: the path of a file holding the password (only with `username`).
        /// The password itself never appears in the configuration.
        public var passwordFile: String?
        /// `broker.ca_file`: CA bundle for `mqtts://` when the broker's certificate is not in the
        /// system trust store.
        public var caFile: String?
        /// `broker.cert_file` + `broker.key_file`: the client certificate for mutual TLS.
        public var clientCertificate: ClientCertificate?
        /// `broker.qos`. Default 1.
        public var qos: QoS
        /// `broker.topic_prefix`: no wildcards, no leading or trailing `/`. Default `iomt/<gateway.id>`.
        public var topicPrefix: String
        /// `broker.keepalive_s`: 5...3600 seconds. Default 30.
        public var keepAliveSeconds: Int
        /// `broker.session_expiry_s`: 0...4294967295 seconds (MQTT 5). Default 86400.
        public var sessionExpirySeconds: UInt32
        /// `broker.inflight_window`: unacknowledged messages at most, 1...65535. Default 64.
        public var inflightWindow: Int
        /// `broker.reconnect_min_ms`: first reconnect delay, 10...3600000 ms. Default 500.
        public var reconnectMinMilliseconds: Int
        /// `broker.reconnect_max_ms`: reconnect back-off ceiling, `reconnect_min_ms`...3600000 ms.
        /// Default 60000.
        public var reconnectMaxMilliseconds: Int
        /// `broker.status_interval_s`: how often the status is published, 1...86400 s. Default 30.
        public var statusIntervalSeconds: Int

        /// Creates broker settings; defaults as documented, identity-derived ones from `gatewayID`.
        public init(endpoints: [BrokerEndpoint], gatewayID: String, clientID: String? = nil,
                    protocolVersion: MQTTProtocolVersion = .mqtt5, username: String? = nil,
                    passwordFile: String? = nil, caFile: String? = nil,
                    clientCertificate: ClientCertificate? = nil, qos: QoS = .atLeastOnce,
                    topicPrefix: String? = nil, keepAliveSeconds: Int = 30,
                    sessionExpirySeconds: UInt32 = 86_400, inflightWindow: Int = 64,
                    reconnectMinMilliseconds: Int = 500, reconnectMaxMilliseconds: Int = 60_000,
                    statusIntervalSeconds: Int = 30) {
            self.endpoints = endpoints
            self.clientID = clientID ?? "iomt-\(gatewayID)"
            self.protocolVersion = protocolVersion
            self.username = username
            self.passwordFile = passwordFile
            self.caFile = caFile
            self.clientCertificate = clientCertificate
            self.qos = qos
            self.topicPrefix = topicPrefix ?? "iomt/\(gatewayID)"
            self.keepAliveSeconds = keepAliveSeconds
            self.sessionExpirySeconds = sessionExpirySeconds
            self.inflightWindow = inflightWindow
            self.reconnectMinMilliseconds = reconnectMinMilliseconds
            self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
            self.statusIntervalSeconds = statusIntervalSeconds
        }
    }

    /// A client certificate and its private key, for mutual TLS (`broker.cert_file`, `broker.key_file`).
    public struct ClientCertificate: Sendable, Equatable {
        /// PEM certificate (chain) path.
        public var certFile: String
        /// PEM private key path.
        public var keyFile: String
        /// Creates the pair.
        public init(certFile: String, keyFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// `buffer`: the durable store-and-forward buffer.
    public struct Buffer: Sendable, Equatable {
        /// `buffer.max_bytes`: at least 64 KiB. Default 256 MiB.
        public var maxBytes: Int64
        /// `buffer.on_full`. Default `reject`.
        public var onFull: BufferFullPolicy
        /// `buffer.order`. Default `fifo`.
        public var order: DeliveryOrder
        /// `buffer.backlog_share`: with `live-first`, the fraction of the in-flight window kept
        /// for the backlog, 0.05...0.95. Default 0.25.
        public var backlogShare: Double
        /// `buffer.commit_max_delay_ms`: extra wait for company before a commit, 0...1000 ms. Default 0:
        /// readings that arrive while a commit is being synced always share the next commit.
        public var commitMaxDelayMilliseconds: Int
        /// `buffer.commit_max_batch`: readings per commit at most, 1...10000. Default 256.
        public var commitMaxBatch: Int

        /// The smallest accepted `max_bytes` (64 KiB).
        public static let minimumMaxBytes: Int64 = 64 * 1024

        /// Creates buffer settings with the documented defaults.
        public init(maxBytes: Int64 = 256 * 1024 * 1024, onFull: BufferFullPolicy = .reject,
                    order: DeliveryOrder = .fifo, backlogShare: Double = 0.25,
                    commitMaxDelayMilliseconds: Int = 0, commitMaxBatch: Int = 256) {
            self.maxBytes = maxBytes
            self.onFull = onFull
            self.order = order
            self.backlogShare = backlogShare
            self.commitMaxDelayMilliseconds = commitMaxDelayMilliseconds
            self.commitMaxBatch = commitMaxBatch
        }
    }

    /// `output`: the wire format.
    public struct Output: Sendable, Equatable {
        /// `output.format`. Default `json`.
        public var format: OutputFormat
        /// `output.patient_pseudonym_key_file`: when set, readings carry a keyed pseudonym
        /// (HMAC-SHA256 under this key) instead of the patient id, so a broker operator without
        /// the key sees no identifiers. The file must be readable by the agent only (0600).
        public var patientPseudonymKeyFile: String?
        /// `output.units`: UCUM units to convert to where a device sends another unit of the same
        /// quantity (e.g. `[mm[Hg], Cel, kg]`: a kPa blood pressure is published in mm[Hg]).
        /// Empty (the default): every value leaves in the unit the device sent, never converted.
        public var units: [String]
        /// Creates output settings.
        public init(format: OutputFormat = .json, patientPseudonymKeyFile: String? = nil, units: [String] = []) {
            self.format = format
            self.patientPseudonymKeyFile = patientPseudonymKeyFile
            self.units = units
        }

        /// The target units `output.units` accepts (the conversions the agent knows), by quantity.
        public static let convertibleUnits: [[String]] = [["mm[Hg]", "kPa"], ["Cel", "[degF]"], ["kg", "[lb_av]"],
                                                           ["cm", "[in_i]"], ["mg/dL", "mmol/L"]]
    }

    /// One entry of `simulators`: a simulated device.
    public struct Simulator: Sendable, Equatable {
        /// `id`: the device id, unique among simulators. Default `sim-<profile>-<n>`, n the
        /// entry's position counting from 1.
        public var id: String
        /// `profile`: which device to simulate.
        public var profile: SimulatorProfile
        /// `patient`: the patient id its readings carry. Non-empty.
        public var patient: String
        /// `rate`: readings per second, more than 0 and at most 1000.
        public var rate: Double
        /// `count`: stop after this many readings (at least 1); nil runs until stopped.
        public var count: Int?
        /// `seed`: makes the values deterministic. Default: the entry's position counting from 1.
        public var seed: UInt64
        /// `episode`: pulse oximeter only, a scripted desaturation `{after_s, duration_s, spo2}`
        /// (issue 9: produces an alert end to end). Nil: none.
        public var episode: Episode?

        /// `simulators[].episode` (`alternate_s`: flapping): the simulator's own episode type.
        public typealias Episode = SimulatorSource.Episode

        /// Creates a simulator entry.
        public init(id: String, profile: SimulatorProfile, patient: String, rate: Double,
                    count: Int? = nil, seed: UInt64, episode: Episode? = nil) {
            self.episode = episode
            self.id = id
            self.profile = profile
            self.patient = patient
            self.rate = rate
            self.count = count
            self.seed = seed
        }
    }
}

extension AgentConfig {
    /// One entry of `serial`: a USB-serial medical device (issue 4).
    public struct Serial: Sendable, Equatable {
        /// Where the device is found: exactly one of `port` and `match`.
        public enum Port: Sendable, Equatable {
            /// `port`: an absolute path (`/dev/iomt/oximeter-1`, `/dev/serial/by-id/...`).
            case path(String)
            /// `match`: a USB identity read from sysfs.
            case usb(vendorID: UInt16, productID: UInt16?, serial: String?)
        }

        /// `id`: the device id, unique among all devices (simulators too). Default
        /// `serial-<profile>-<n>`, n the entry's position counting from 1.
        public var id: String
        /// `profile`: the device profile.
        public var profile: SerialProfileName
        /// `patient`: the patient id its readings carry. Non-empty.
        public var patient: String
        /// `port` or `match`.
        public var port: Port
        /// `baud`: overrides the profile's baud rate (one of ``Serial/supportedBauds``).
        public var baud: Int?
        /// `data_bits`: 5...8, overrides the profile's.
        public var dataBits: Int?
        /// `parity`: overrides the profile's.
        public var parity: SerialParity?
        /// `stop_bits`: 1 or 2, overrides the profile's.
        public var stopBits: Int?
        /// `rtscts`: hardware flow control, overrides the profile's (off for every built-in
        /// profile). There is deliberately no XON/XOFF setting: it eats 0x11/0x13 data bytes.
        public var hardwareFlowControl: Bool?
        /// `reconnect_min_ms`: first reopen delay after an unplug, 10...60000. Default 250.
        public var reconnectMinMilliseconds: Int
        /// `reconnect_max_ms`: reopen back-off ceiling, `reconnect_min_ms`...600000. Default 5000.
        public var reconnectMaxMilliseconds: Int
        /// `line_profile`: with `profile: line`, the absolute path of a line profile file.
        public var lineProfile: String?
        /// The parsed `line_profile` file: set by ``AgentConfig/load(path:)`` (which reports its
        /// problems with the rest); nil after ``AgentConfig/parse(yaml:source:)``, which reads no files.
        public var lineProfileDocument: LineProfileDocument?

        /// Baud rates `baud` accepts.
        public static let supportedBauds = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400]

        /// Creates a serial entry; defaults as documented.
        public init(id: String, profile: SerialProfileName, patient: String, port: Port, baud: Int? = nil,
                    dataBits: Int? = nil, parity: SerialParity? = nil, stopBits: Int? = nil,
                    hardwareFlowControl: Bool? = nil, reconnectMinMilliseconds: Int = 250,
                    reconnectMaxMilliseconds: Int = 5000, lineProfile: String? = nil,
                    lineProfileDocument: LineProfileDocument? = nil) {
            self.id = id
            self.profile = profile
            self.patient = patient
            self.port = port
            self.baud = baud
            self.dataBits = dataBits
            self.parity = parity
            self.stopBits = stopBits
            self.hardwareFlowControl = hardwareFlowControl
            self.reconnectMinMilliseconds = reconnectMinMilliseconds
            self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
            self.lineProfile = lineProfile
            self.lineProfileDocument = lineProfileDocument
        }
    }
}

/// A serial device profile (the same names as `IoMTSerial.SerialProfile.builtIn`).
public enum SerialProfileName: String, Sendable, Equatable, CaseIterable {
    /// Contec CMS50D+/E/F, old 5-byte streaming protocol (19200 8O1, then 4800 8N1).
    case contecLegacy = "contec-cms50-legacy"
    /// Contec CMS50D+ fw 4.6 / E / F, V7.0 command protocol (115200 8N1).
    case contecV7 = "contec-cms50-v7"
    /// Nonin data format #2 (9600 8N1).
    case noninDF2 = "nonin-df2"
    /// Nonin data format #7 (9600 8N1).
    case noninDF7 = "nonin-df7"
    /// Nonin data format #8 (9600 8N1).
    case noninDF8 = "nonin-df8"
    /// Masimo Rad-8 / Radical-7 ASCII 1 (9600 8N1).
    case masimoASCII1 = "masimo-ascii1"
    /// LifeScan OneTouch Ultra 2 record download (9600 8N1).
    case oneTouchUltra2 = "onetouch-ultra2"
    /// A declarative line profile file, named by `line_profile` (``LineProfileDocument``).
    case line
}

/// `serial[].parity`.
public enum SerialParity: String, Sendable, Equatable, CaseIterable {
    case none, odd, even
}

/// `log.level`, the same names and order as swift-log's `Logger.Level`.
public enum LogLevel: String, Sendable, Equatable, CaseIterable {
    /// Everything, including per-message detail.
    case trace
    /// Diagnostic detail.
    case debug
    /// Normal operation (the default).
    case info
    /// Noteworthy but normal events.
    case notice
    /// Something went wrong and was handled.
    case warning
    /// Something failed.
    case error
    /// The agent cannot continue.
    case critical
}

/// `broker.protocol`.
public enum MQTTProtocolVersion: String, Sendable, Equatable, CaseIterable {
    /// MQTT 5.0 (session expiry, user properties such as `reading-id`).
    case mqtt5
    /// MQTT 3.1.1.
    case mqtt311
}

/// `broker.qos`: the MQTT quality of service readings are published with.
public enum QoS: Int, Sendable, Equatable, CaseIterable {
    /// QoS 1: delivered at least once (consumers de-duplicate on the reading id).
    case atLeastOnce = 1
    /// QoS 2: delivered exactly once (between the gateway and the broker).
    case exactlyOnce = 2
}

/// `buffer.on_full`: what happens to a new reading when the buffer is full.
public enum BufferFullPolicy: String, Sendable, Equatable, CaseIterable {
    /// Refuse the new reading (it is counted as lost and a gap record says so).
    case reject
    /// Evict the oldest stored readings to make room (counted as lost, with a gap record).
    case dropOldest = "drop-oldest"
}

/// `buffer.order`: in which order the backlog and live readings are sent.
public enum DeliveryOrder: String, Sendable, Equatable, CaseIterable {
    /// Strictly oldest first.
    case fifo
    /// Newest readings first, with `backlog_share` of the in-flight window for the backlog.
    case liveFirst = "live-first"
}

/// `output.format`: the payload format. An open set: more formats (FHIR) come later.
public struct OutputFormat: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The name used in the configuration.
    public var rawValue: String
    /// Wraps a name (``parse(yaml:source:)`` accepts only ``known`` ones).
    public init(rawValue: String) { self.rawValue = rawValue }
    /// The name used in the configuration.
    public var description: String { rawValue }
    /// The `iomt-reading/1` JSON format.
    public static let json = OutputFormat(rawValue: "json")
    /// FHIR R4: one transaction Bundle of PHD-IG Observations per reading (`IoMTFHIR`).
    public static let fhir = OutputFormat(rawValue: "fhir")
    /// The formats this build understands.
    public static let known: [OutputFormat] = [.json, .fhir]
}

/// A simulator's device profile (the same names as `IoMTSources.SimulatedProfile`).
public enum SimulatorProfile: String, Sendable, Equatable, CaseIterable {
    /// SpO2, pulse rate, perfusion index and a pleth waveform.
    case pulseOximeter = "pulse-oximeter"
    /// Systolic, diastolic and mean arterial pressure, pulse rate.
    case bloodPressure = "blood-pressure"
    /// Body temperature.
    case thermometer = "thermometer"
}
