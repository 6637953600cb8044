print("iomt-agent: not built yet")
