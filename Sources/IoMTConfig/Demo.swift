extension AgentConfig {
    /// The demo configuration: three simulated devices (pulse oximeter, blood pressure,
    /// thermometer) for one patient, a local broker at `127.0.0.1:1883`, state in `./run/state`,
    /// and the default alert rules, with a desaturation episode 20 s into the oximeter's run so
    /// the demo shows an SpO2 alert raised (after its 15 s) and cleared.
    /// `iomt-agent demo` runs on this when no `--config` is given.
    public static let demoYAML = """
        # iomt-agent demo: simulated devices, local broker, state under ./run.
        gateway:
          id: demo-hub
        state_dir: ./run/state
        log:
          level: info
        broker:
          url: mqtt://127.0.0.1:1883
          qos: 1
          keepalive_s: 10
          reconnect_min_ms: 200
          reconnect_max_ms: 5000
          status_interval_s: 5
        buffer:
          max_bytes: 64MiB
          on_full: drop-oldest
          order: fifo
        output:
          format: json
        simulators:
          - profile: pulse-oximeter
            patient: P-1001
            rate: 1.0
            id: sim-oximeter-1
            episode: {after_s: 20, duration_s: 40, spo2: 86}
          - profile: blood-pressure
            patient: P-1001
            rate: 0.2
            id: sim-bp-1
          - profile: thermometer
            patient: P-1001
            rate: 0.5
            id: sim-thermometer-1
        alerts:
          enabled: true
          defaults: true
        """

    /// The demo configuration (``demoYAML``) with its state directory and broker port replaced.
    ///
    /// - Throws: ``ConfigErrors`` if `brokerPort` is not 1...65535 or `stateDir` is empty
    ///   (the embedded YAML itself is checked by the tests).
    public static func demoDefault(stateDir: String = "./run/state", brokerPort: Int = 1883) throws(ConfigErrors) -> AgentConfig {
        var config = try parse(yaml: demoYAML, source: "<demo>")
        var problems: [ConfigProblem] = []
        if !(1...65535).contains(brokerPort) {
            problems.append(ConfigProblem(source: "<demo>", line: nil, keyPath: "broker.url",
                                          message: "broker port must be 1 to 65535, got \(brokerPort)"))
        }
        if stateDir.isEmpty {
            problems.append(ConfigProblem(source: "<demo>", line: nil, keyPath: "state_dir", message: "must not be empty"))
        }
        if !problems.isEmpty { throw ConfigErrors(problems) }
        config.stateDir = stateDir
        config.broker.endpoints = [BrokerEndpoint(tls: false, host: "127.0.0.1", port: brokerPort)]
        return config
    }
}
