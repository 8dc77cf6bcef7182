import sys

from voicechat.cli import main

sys.exit(main())
