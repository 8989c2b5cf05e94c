"""Hugging Face Space entry: the fdiwn-sr web demo (``fdiwn-sr serve`` without the command line).

The Space runs ``python app.py`` from the repository root, so the ``fdiwn_sr``
package beside this file is imported as is; ``requirements.txt`` lists its
dependencies. The Space sets GRADIO_SERVER_NAME=0.0.0.0; locally this binds to
127.0.0.1. Weights come from the Hub (``fdiwn-sr/fdiwn``) on first use per scale.
"""

from fdiwn_sr.demo import serve

if __name__ == "__main__":
    serve(host=None)
