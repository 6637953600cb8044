# The two commands of the README:
#   make demo   install what is missing, build, start a local mosquitto, run the agent on
#               simulated devices and show the readings arriving at the broker
#   make test   install what is missing and run every test (CI runs this through .ci/run)
.PHONY: demo test build bench clean

demo:
	./scripts/demo.sh

test:
	./scripts/test.sh

build:
	swift build

bench:
	./scripts/bench.sh

clean:
	rm -rf .build run
