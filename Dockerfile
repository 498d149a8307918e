# The operator and API image (the trainer has its own: trainer-image/).
#   docker build -t shunter/shunter:0.1.0 .
#
# The dependencies are built and installed in layers of their own, keyed by the
# dependency list alone (read from pyproject.toml): a change to the code, or to the
# tools' settings in pyproject.toml, rebuilds only the last layers.
FROM python:3.11-slim AS requirements
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /requirements.txt

FROM python:3.11-slim AS build
COPY --from=requirements /requirements.txt /requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /deps -r /requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY api ./api
COPY hack/shunter ./hack/shunter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin shunter
COPY --from=build /deps /deps
RUN pip install --no-cache-dir /deps/*.whl && rm -rf /deps
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8080
CMD ["shunter-api"]
