# The pod sandbox ("pause") image, without a registry: Debian's static
# catatonit (a tiny init that reaps zombies) as /pause, `-P` = pause mode.
FROM scratch
COPY catatonit /pause
ENTRYPOINT ["/pause", "-P"]
