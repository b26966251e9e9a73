import sys

from faas_connector.main import main

sys.exit(main())
