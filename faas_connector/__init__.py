"""MICO's Kafka-FaaS-connector: reads CloudEvents from a topic, passes each through an OpenFaaS
function (or on unchanged), and routes the results; at least once, nothing lost."""
